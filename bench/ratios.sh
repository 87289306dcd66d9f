#!/usr/bin/env bash
# Claims against the machine's limit, side by side in one sitting: the same
# wrk (one thread, same connections and duration, pinned to core 0) against
# GET /healthz of the same server (the baseline: the most this server and
# machine answer), against claims that each commit a new voucher (a supply
# larger than the run), and against claims of a sold-out campaign (answered
# from memory). The server is pinned to core 1. Each connection count runs
# ROUNDS times, the three kinds interleaved, so drift on a shared machine
# shows as spread rather than as a ratio.
# On SQLite the durable claims' notes also give the writer thread's busy
# time for each committed claim (voucherd_sqlite_writer_busy_seconds over
# the run), which the aim of about 10 µs is about.
#
# With ON_CLAIM=1 the durable claims' campaign has its codes made on claim:
# each claim mints (inserts) its voucher rather than taking a generated one.
#
# Usage: bench/ratios.sh [seconds per run, default 10]
#   CONNECTIONS="64 256"  ROUNDS=3  ON_CLAIM=1
#   BIN=path/to/voucherd (default: a release build of this checkout)
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres  (PostgreSQL:
#   a scratch database is made beside it and dropped afterwards)
# Needs: wrk (apt-get install wrk), taskset, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNECTIONS="${CONNECTIONS:-64 256}"
ROUNDS="${ROUNDS:-3}"
PORT=18510
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -p voucherd >/dev/null
  BIN=target/release/voucherd
fi
WORK=$(mktemp -d)
SERVER=""
SCRATCH_DB=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  wait 2>/dev/null
  [ -n "$SCRATCH_DB" ] && psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $SCRATCH_DB" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
. bench/lib.sh

STORE_ARGS=(--data-dir "$WORK/data")
STORE=SQLite
if [ -n "${DATABASE_URL:-}" ]; then
  SCRATCH_DB="voucherd_ratios_$$"
  psql "$DATABASE_URL" -qc "CREATE DATABASE $SCRATCH_DB" >/dev/null
  STORE_ARGS+=(--database-url "${DATABASE_URL%/*}/$SCRATCH_DB")
  STORE=PostgreSQL
fi
RUST_LOG=warn taskset -c 1 "$BIN" serve --listen "127.0.0.1:$PORT" "${STORE_ARGS[@]}" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
node_started "$WORK/out"
[ -n "$SCRATCH_DB" ] && database_tokens "$BIN" "${DATABASE_URL%/*}/$SCRATCH_DB" "$WORK/data" "http://127.0.0.1:$PORT"
URL="http://127.0.0.1:$PORT"
ON_CLAIM_JSON=false
[ "${ON_CLAIM:-0}" = 1 ] && ON_CLAIM_JSON=true
campaign() { # supply [on_claim]
  local id
  id=$(curl -s -X POST "$URL/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench\",\"kind\":\"coupon\",\"supply\":$1,\"codes\":{\"on_claim\":${2:-false}}}" | json '["id"]')
  publish_live "$URL" "$id"
  echo "$id"
}
issued() {
  curl -s "$URL/v1/campaigns/$1/report" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json '["issued_total"]'
}
run_wrk() { # connections output url [script]
  local script=()
  [ -n "${4:-}" ] && script=(-s "$4")
  taskset -c 0 wrk -t1 -c"$1" -d"${DURATION}s" --latency "${script[@]}" \
    -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$3" >"$2"
}
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p50() { awk '/ 50%/ {print $2}' "$1"; }
p99() { awk '/ 99%/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {n=$5} END {print n+0}' "$1"; }
errors() { awk '/Socket errors/ {print $0}' "$1"; }
# The SQLite writer's busy seconds so far (empty on PostgreSQL).
writer_busy() { curl -s "$URL/metrics" | awk '$1 == "voucherd_sqlite_writer_busy_seconds_total" {print $2}'; }

GONE=$(campaign 1)
curl -s -X POST "$URL/v1/campaigns/$GONE/claims" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
  -H 'Content-Type: application/json' -d '{"user_id":"first"}' >/dev/null

echo "store: $STORE; durable claims' codes on claim: $ON_CLAIM_JSON; wrk -t1 -d${DURATION}s pinned to core 0, server pinned to core 1; $(date -u +%FT%TZ)"
printf '%-6s %-5s %-18s %10s %9s %9s %7s  %s\n' conns round run "answers/s" p50 p99 ratio notes
for c in $CONNECTIONS; do
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk "$c" "$WORK/base" "$URL/healthz"
    OPEN=$(campaign 500000 "$ON_CLAIM_JSON")
    BUSY_BEFORE=$(writer_busy)
    run_wrk "$c" "$WORK/claims" "$URL/v1/campaigns/$OPEN/claims" bench/claim.lua
    COMMITTED=$(issued "$OPEN")
    BUSY_AFTER=$(writer_busy)
    WRITER=""
    [ -n "$BUSY_AFTER" ] && WRITER="; writer $(echo "($BUSY_AFTER - $BUSY_BEFORE) * 1000000 / $COMMITTED" | bc -l | xargs printf '%.1f') µs a claim"
    run_wrk "$c" "$WORK/soldout" "$URL/v1/campaigns/$GONE/claims" bench/claim.lua
    BASE=$(rate "$WORK/base")
    CLAIMS=$(echo "$COMMITTED / $DURATION" | bc -l)
    SOLD=$(rate "$WORK/soldout")
    printf '%-6s %-5s %-18s %10.0f %9s %9s %7s  %s\n' "$c" "$round" "GET /healthz" "$BASE" \
      "$(p50 "$WORK/base")" "$(p99 "$WORK/base")" 1.00 "$(errors "$WORK/base")"
    printf '%-6s %-5s %-18s %10.0f %9s %9s %7.2f  %s\n' "$c" "$round" "durable claims" "$CLAIMS" \
      "$(p50 "$WORK/claims")" "$(p99 "$WORK/claims")" "$(echo "$CLAIMS / $BASE" | bc -l)" \
      "$COMMITTED committed; wrk answers/s $(rate "$WORK/claims"); non-2xx $(non2xx "$WORK/claims")$WRITER $(errors "$WORK/claims")"
    printf '%-6s %-5s %-18s %10.0f %9s %9s %7.2f  %s\n' "$c" "$round" "sold-out answers" "$SOLD" \
      "$(p50 "$WORK/soldout")" "$(p99 "$WORK/soldout")" "$(echo "$SOLD / $BASE" | bc -l)" \
      "non-2xx $(non2xx "$WORK/soldout") (every answer should be 410) $(errors "$WORK/soldout")"
  done
done
