#!/bin/sh
# First start: a cluster in $PGDATA owned by $POSTGRES_USER (a superuser, password
# $POSTGRES_PASSWORD, scram-sha-256 over TCP from anywhere), and the database $POSTGRES_DB; then
# the server. Later starts find $PGDATA/PG_VERSION and only start the server.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then  # a bind mount may come owned by anyone: make it the server's, then drop root
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?is not set: the superuser needs a password}"
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    scratch=$(mktemp -d)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$scratch/password"
    initdb -D "$PGDATA" -U "$user" --pwfile="$scratch/password" --auth-host=scram-sha-256 --auth-local=trust \
        --encoding=UTF8 --locale=C.UTF-8
    rm -f "$scratch/password"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    # the database is made on a private socket: pg_isready (the healthcheck) says nothing until the
    # real server starts
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $scratch" -w start
    if [ "$database" != postgres ]; then
        createdb -h "$scratch" -U "$user" "$database"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
    rmdir "$scratch"
    echo "PostgreSQL cluster made in $PGDATA (user $user, database $database)"
fi
exec "$@"
