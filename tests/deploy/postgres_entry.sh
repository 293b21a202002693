#!/bin/sh
# The drills' PostgreSQL (tests/deploy/postgres_image.sh's image, run as user postgres): a
# throw-away cluster trusting its own network, with the databases compose.yaml names (the store,
# Dagster's storage) and the drills' warehouse. Its data lives in the container, so a restart
# keeps it; fsync stays on, so a killed server loses nothing committed.
set -eu
PGDATA=/var/lib/postgresql/drill
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --auth=trust >/dev/null
  {
    echo "listen_addresses = '*'"
    echo "unix_socket_directories = '/tmp'"
    echo "max_connections = 300"
    # As deploy/compose/compose.yaml's postgres: a dead client's locks go within about 20 s.
    echo "tcp_keepalives_idle = 10"
    echo "tcp_keepalives_interval = 5"
    echo "tcp_keepalives_count = 2"
  } >> "$PGDATA/postgresql.conf"
  echo "host all all all trust" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -h /tmp -U postgres -q -c "CREATE ROLE mdstudio LOGIN SUPERUSER"
  for database in mdstudio dagster warehouse; do
    createdb -h /tmp -U postgres -O mdstudio "$database"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA"
