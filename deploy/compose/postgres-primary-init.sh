#!/bin/bash
# Runs once, on the primary's first start (docker-entrypoint-initdb.d), against the temporary server.
# Creates the role the replica uses for pg_basebackup and streaming, and the physical replication slot
# `replica_slot`. The slot makes the primary keep every WAL segment the replica has not received yet, so a
# replica that falls behind catches up instead of needing a new base backup (the price: WAL piles up on the
# primary while the replica is down; `docker compose down -v` clears it).
# The image sources a script without the executable bit into its own shell: keep to its `set -Eeo pipefail`.
set -eo pipefail

: "${REPLICATION_USER:?REPLICATION_USER must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
slot="${REPLICATION_SLOT:-replica_slot}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" -v slot="$slot" <<'SQL'
CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SELECT pg_create_physical_replication_slot(:'slot', true);
SQL

# The image's pg_hba.conf lets `all` databases in over the network, but replication connections match
# only lines naming the `replication` pseudo-database. The server restarts after init and reads this.
echo "host replication ${REPLICATION_USER} all scram-sha-256" >>"$PGDATA/pg_hba.conf"
