#!/usr/bin/env bash
# A PostgreSQL primary with a synchronous standby on this machine, for
# trying a failover by hand (the test `failover::` does the same itself).
#
#   deploy/local/pg-pair.sh up [dir]         # primary on 55432, standby on 55433
#   deploy/local/pg-pair.sh kill-primary [dir]
#   deploy/local/pg-pair.sh promote [dir]
#   deploy/local/pg-pair.sh down [dir]       # stops both and removes dir
#
# Nodes take both hosts and follow the primary:
#   voucherd serve --database-url \
#     'postgres://postgres@127.0.0.1:55432,127.0.0.1:55433/postgres?target_session_attrs=read-write'
# A commit is acknowledged only once the standby has it
# (synchronous_commit=on, synchronous_standby_names=standby), so promoting
# the standby after the primary dies loses nothing a node acknowledged.
set -euo pipefail
ACTION="${1:?up | kill-primary | promote | down}"
DIR="${2:-/tmp/voucherd-pg-pair}"
PRIMARY_PORT="${PRIMARY_PORT:-55432}"
STANDBY_PORT="${STANDBY_PORT:-55433}"
BIN="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin"
as_postgres() { runuser -u postgres -- "$@"; }
start() { # which port settings
  as_postgres "$BIN/pg_ctl" -D "$DIR/$1" -l "$DIR/$1.log" -w start \
    -o "-p $2 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR $3"
}

case "$ACTION" in
  up)
    mkdir -p "$DIR" && chown postgres "$DIR"
    as_postgres "$BIN/initdb" -D "$DIR/primary" -U postgres --auth=trust -E UTF8 >/dev/null
    start primary "$PRIMARY_PORT" "-c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on -c synchronous_standby_names=standby"
    as_postgres "$BIN/pg_basebackup" -D "$DIR/standby" -R -X stream \
      -d "host=127.0.0.1 port=$PRIMARY_PORT user=postgres application_name=standby"
    # The standby, once promoted, waits for no standby of its own.
    start standby "$STANDBY_PORT" "-c hot_standby=on"
    for _ in $(seq 1 100); do
      state=$("$BIN/psql" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -tAc \
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'" || true)
      [ "$state" = sync ] && break
      sleep 0.1
    done
    [ "$state" = sync ] || { echo "FATAL: the standby is not synchronous ($state)" >&2; exit 1; }
    echo "primary 127.0.0.1:$PRIMARY_PORT, synchronous standby 127.0.0.1:$STANDBY_PORT"
    echo "postgres://postgres@127.0.0.1:$PRIMARY_PORT,127.0.0.1:$STANDBY_PORT/postgres?target_session_attrs=read-write"
    ;;
  kill-primary) as_postgres "$BIN/pg_ctl" -D "$DIR/primary" -m immediate -w stop ;;
  promote) as_postgres "$BIN/pg_ctl" -D "$DIR/standby" -w promote ;;
  down)
    for which in primary standby; do
      [ -d "$DIR/$which" ] && as_postgres "$BIN/pg_ctl" -D "$DIR/$which" -m immediate -w stop 2>/dev/null || true
    done
    rm -rf "$DIR"
    ;;
  *) echo "unknown action: $ACTION" >&2; exit 2 ;;
esac
