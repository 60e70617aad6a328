#!/usr/bin/env bash
# Starts a local PostgreSQL cluster for pushbridge's tests and development.
#
#   eval "$(scripts/postgres-setup.sh)"     # exports PUSHBRIDGE_TEST_POSTGRES_URL
#
# Installs the Debian `postgresql` server package when no server binaries are found,
# initialises a cluster under $PUSHBRIDGE_PG_DIR (default /tmp/pushbridge-pg), starts it
# on 127.0.0.1:$PUSHBRIDGE_PG_PORT (default 55432) with trust auth on loopback only,
# creates role and database `pushbridge` (role may CREATE DATABASE: the tests make one
# database per test), and prints the export line on stdout. Idempotent: re-running
# against a running cluster only prints the URL. Everything else goes to stderr.
# Stop it with scripts/postgres-stop.sh.
set -euo pipefail

PORT="${PUSHBRIDGE_PG_PORT:-55432}"
DIR="${PUSHBRIDGE_PG_DIR:-/tmp/pushbridge-pg}"
DATA="$DIR/data"

log() { echo "postgres-setup: $*" >&2; }

find_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && best="$d"
    done
    # Glob order is lexical; versions here are two-digit (13…17), so the last is newest.
    echo "$best"
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "no PostgreSQL server binaries under /usr/lib/postgresql and not root: install 'postgresql' first"
        exit 1
    fi
    log "installing the postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)"
    [ -n "$BINDIR" ] || { log "postgresql installed but initdb not found"; exit 1; }
fi

# PostgreSQL refuses to run as root: run server tools as `postgres` when we are root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$DIR"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$DIR"; fi
chmod 700 "$DIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initialising cluster in $DATA"
    as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
fi

if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "starting PostgreSQL ($BINDIR) on 127.0.0.1:$PORT"
    # fsync off: a test cluster trades durability for speed; listen on loopback only.
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c fsync=off -c max_connections=200" \
        start >&2 || { tail -n 30 "$DIR/server.log" >&2; exit 1; }
fi

PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
if [ "$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'pushbridge'")" != "1" ]; then
    "${PSQL[@]}" -c "CREATE ROLE pushbridge LOGIN CREATEDB" >&2
fi
if [ "$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'pushbridge'")" != "1" ]; then
    "${PSQL[@]}" -c "CREATE DATABASE pushbridge OWNER pushbridge" >&2
fi

echo "export PUSHBRIDGE_TEST_POSTGRES_URL='postgres://pushbridge@127.0.0.1:$PORT/pushbridge?sslmode=disable'"
