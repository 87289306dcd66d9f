#!/usr/bin/env bash
# Claims against the machine's limit, side by side in one run: the same wrk
# (same threads, connections and duration) against GET /healthz of the same
# server (the baseline: the most this server and machine answer), against
# claims that each commit a new voucher (a supply larger than the run), and
# against claims of a sold-out campaign (answered from memory).
#
# Usage: bench/ratios.sh [seconds per run, default 15]
# Needs: wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
CONNECTIONS="${CONNECTIONS:-256}"
PORT=18510
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -p voucherd >/dev/null
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
. bench/lib.sh

RUST_LOG=warn target/release/voucherd serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
for _ in $(seq 1 100); do grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/out" 2>/dev/null && break; sleep 0.2; done
eval "$(grep '^export' "$WORK/out")"
URL="http://127.0.0.1:$PORT"
campaign() {
  local id
  id=$(curl -s -X POST "$URL/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"name\":\"bench\",\"kind\":\"coupon\",\"supply\":$1}" | json '["id"]')
  publish_live "$URL" "$id"
  echo "$id"
}
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '/ 99%/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {print $5}' "$1"; }

wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$URL/healthz" >"$WORK/baseline"
OPEN=$(campaign 500000)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/claim.lua \
  -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$URL/v1/campaigns/$OPEN/claims" >"$WORK/claims"
COMMITTED=$(curl -s "$URL/v1/campaigns/$OPEN/report" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json '["issued_total"]')
GONE=$(campaign 1)
curl -s -X POST "$URL/v1/campaigns/$GONE/claims" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
  -H 'Content-Type: application/json' -d '{"user_id":"first"}' >/dev/null
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/claim.lua \
  -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$URL/v1/campaigns/$GONE/claims" >"$WORK/soldout"

BASE=$(rate "$WORK/baseline")
printf '%-28s %12s %10s %8s\n' "run" "answers/s" "p99" "ratio"
printf '%-28s %12.0f %10s %8s\n' "baseline GET /healthz" "$BASE" "$(p99 "$WORK/baseline")" "1.00"
CLAIMS=$(echo "$COMMITTED / $DURATION" | bc -l)
printf '%-28s %12.0f %10s %8.2f   (%s committed; non-2xx %s)\n' "durable claims" "$CLAIMS" "$(p99 "$WORK/claims")" "$(echo "$CLAIMS / $BASE" | bc -l)" "$COMMITTED" "$(non2xx "$WORK/claims")"
SOLD=$(rate "$WORK/soldout")
printf '%-28s %12.0f %10s %8.2f   (all 410: non-2xx %s)\n' "sold-out answers" "$SOLD" "$(p99 "$WORK/soldout")" "$(echo "$SOLD / $BASE" | bc -l)" "$(non2xx "$WORK/soldout")"
