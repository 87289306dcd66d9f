#!/usr/bin/env bash
# Committed claims per second: one transaction per claim (--claim-batch-max 1)
# against batched claims (the default), on the embedded store and on
# PostgreSQL, side by side in one run. Each run starts a release build of
# voucherd on a fresh database, creates a campaign whose supply exceeds what
# the run can claim, drives it with wrk (distinct users, keep-alive
# connections), and counts committed claims from the campaign's report.
#
# Usage: bench/claims.sh [seconds per run, default 15]
# Needs: wrk (apt-get install wrk), PostgreSQL at 127.0.0.1:5432 (user postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
SUPPLY="${SUPPLY:-500000}"
CONNECTIONS="${CONNECTIONS:-256}"
PORT=18500
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -p voucherd >/dev/null
BIN=target/release/voucherd
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

. bench/lib.sh

# run NAME BACKEND EXTRA_FLAGS...
run() {
  local name=$1 backend=$2; shift 2
  local dir="$WORK/$name" url
  mkdir -p "$dir"
  local store=(--data-dir "$dir")
  if [ "$backend" = postgres ]; then
    local db="voucherd_bench_$RANDOM$RANDOM"
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
    store+=(--database-url "postgres://postgres@127.0.0.1:5432/$db")
  fi
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" "${store[@]}" "$@" >"$dir/out" 2>"$dir/err" &
  SERVER=$!
  node_started "$dir/out"
  [ "$backend" = postgres ] && database_tokens "$BIN" "${store[3]}" "$dir"
  url="http://127.0.0.1:$PORT"
  local id
  id=$(curl -s -X POST "$url/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"name\":\"bench\",\"kind\":\"coupon\",\"supply\":$SUPPLY}" | json '["id"]')
  publish_live "$url" "$id"
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/claim.lua \
    -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$url/v1/campaigns/$id/claims" >"$dir/wrk"
  local issued p99
  issued=$(curl -s "$url/v1/campaigns/$id/report" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json '["issued_total"]')
  p99=$(awk '/ 99%/ {print $2}' "$dir/wrk")
  printf '%-10s %-34s %10d %12.0f %10s\n' "$backend" "$name" "$issued" "$(echo "$issued / $DURATION" | bc -l)" "$p99"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
  if [ "$backend" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $db" >/dev/null
  fi
}

printf '%-10s %-34s %10s %12s %10s\n' backend configuration committed claims/s p99
run per-claim-sqlite sqlite --claim-batch-max 1 --claim-batch-linger-us 0
run batched-sqlite sqlite
run per-claim-postgres-16-in-flight postgres --claim-batch-max 1 --claim-batch-linger-us 0 --claim-batches-in-flight 16
run batched-postgres postgres
run batched-postgres-2-in-flight postgres --claim-batches-in-flight 2
run batched-postgres-4-in-flight postgres --claim-batches-in-flight 4
