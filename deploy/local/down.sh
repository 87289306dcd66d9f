#!/usr/bin/env bash
# Stops what deploy/local/up.sh started, by the pids it recorded (SIGTERM,
# then SIGKILL after 15 s), drops its database, and fails if any of those
# processes is left. Logs stay in the directory.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"
DIR="${VOUCHERD_LOCAL_DIR:-/tmp/voucherd-local}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
[[ -d "$DIR" ]] || { echo "nothing to stop: $DIR does not exist"; exit 0; }
stop_pids "$DIR"
if [[ -f "$DIR/database" ]]; then
  dropdb --if-exists "$(cat "$DIR/database")" && rm -f "$DIR/database"
fi
echo "stopped; logs in $DIR"
