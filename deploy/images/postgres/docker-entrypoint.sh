#!/bin/bash
# Entry point of the Postgres image, the part of the official postgres image's interface docker-compose.yml
# uses: on an empty PGDATA it runs initdb with POSTGRES_USER and POSTGRES_PASSWORD, creates POSTGRES_DB,
# runs /docker-entrypoint-initdb.d/*.sh (sourced) and *.sql against a temporary server that listens on the
# Unix socket only, then starts `postgres "$@"` as the postgres user. Local connections are trusted, network
# ones need a password (scram-sha-256).
set -Eeo pipefail

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups bash "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  POSTGRES_USER="${POSTGRES_USER:-postgres}"
  POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    echo 'CREATE DATABASE :"db"' |
      psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v db="$POSTGRES_DB" >/dev/null
  fi
  export POSTGRES_USER POSTGRES_DB
  for file in /docker-entrypoint-initdb.d/*; do
    case "$file" in
      *.sh) echo "docker-entrypoint: running $file" && . "$file" ;;
      *.sql) echo "docker-entrypoint: running $file" &&
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$file" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo 'docker-entrypoint: initialised, starting postgres'
fi

exec "$@"
