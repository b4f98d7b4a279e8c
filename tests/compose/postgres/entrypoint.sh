#!/bin/sh
# As the official image: a new data folder is made with POSTGRES_USER (password
# POSTGRES_PASSWORD) and POSTGRES_DB; the server listens on every address and asks
# clients from the network for that password.
set -eu
user=${POSTGRES_USER:-postgres}
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
as_postgres() { setpriv --reuid postgres --regid postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pwfile
    chown postgres /tmp/pwfile
    as_postgres initdb --username="$user" --pwfile=/tmp/pwfile \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"${POSTGRES_DB:-$user}\" OWNER \"$user\";" \
        | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid postgres --regid postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='*'
