#!/bin/bash
# Entry point of the `replica` service (the Postgres image, deploy/images/postgres). On an empty volume it clones the primary with
# pg_basebackup: -R writes standby.signal and primary_conninfo, -S streams through the primary's physical
# slot. Then it hands over to the image's own entry point, which finds an initialised data directory and
# starts postgres as a hot standby (read-only queries while it replays the primary's WAL).
set -euo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
primary_host="${PRIMARY_HOST:-postgres}"
primary_port="${PRIMARY_PORT:-5432}"
slot="${REPLICATION_SLOT:-replica_slot}"
: "${REPLICATION_USER:?REPLICATION_USER must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"

# Written after a successful clone: a backup interrupted half-way leaves files but no marker, and is redone.
# The marker survives a promotion, so a promoted replica is never wiped on restart.
marker="$PGDATA/.stampede-basebackup-complete"

if [ ! -f "$marker" ]; then
  echo "replica: cloning ${primary_host}:${primary_port} through slot ${slot}"
  mkdir -p "$PGDATA"
  find "$PGDATA" -mindepth 1 -delete
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"

  until pg_isready -q -h "$primary_host" -p "$primary_port"; do
    echo "replica: waiting for the primary"
    sleep 1
  done

  setpriv --reuid=postgres --regid=postgres --init-groups env PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
    --host="$primary_host" --port="$primary_port" --username="$REPLICATION_USER" \
    --pgdata="$PGDATA" --write-recovery-conf --slot="$slot" \
    --wal-method=stream --checkpoint=fast --progress --no-password
  setpriv --reuid=postgres --regid=postgres --init-groups touch "$marker"
  echo "replica: base backup complete"
fi

exec bash /usr/local/bin/docker-entrypoint.sh "$@"
