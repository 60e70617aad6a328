#!/usr/bin/env bash
# Stops the cluster started by scripts/postgres-setup.sh (same PUSHBRIDGE_PG_DIR).
# Pass --purge to also delete its data directory.
set -euo pipefail

DIR="${PUSHBRIDGE_PG_DIR:-/tmp/pushbridge-pg}"
DATA="$DIR/data"

BINDIR=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && BINDIR="$d"; done
[ -n "$BINDIR" ] || { echo "postgres-stop: pg_ctl not found" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -f "$DATA/PG_VERSION" ] && as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
else
    echo "postgres-stop: no cluster running in $DATA" >&2
fi

if [ "${1:-}" = "--purge" ]; then rm -rf "$DIR"; fi
