#!/usr/bin/env bash
# Claims on one campaign while an admin publishes another of a large
# supply, against the same claims with nothing else going on: wrk -t1
# -c$CONNECTIONS for $SECONDS s idle, then windows of $SECONDS s one after
# another from the publish's answer until the campaign is live, so that
# the end of a long publish (a big database, a cold cache) is measured as
# well as its start (node on core 1, wrk on core 0); and the time from the
# publish's answer until the campaign is live.
#
# With ON_CLAIM=1 the large campaign's codes are made on claim: it is live
# in the publish's answer, and the first window (always run) is the claims
# on the other campaign just after it; a last window claims from the new
# campaign itself, each claim minting its code.
#
# Usage: bench/publish.sh [supply, default 5000000] [seconds, default 30]
#   CONNECTIONS=16  OTHER_SUPPLY=2000000 (the campaign claimed meanwhile)
#   ON_CLAIM=1 (the large campaign's codes are made on claim)
#   BIN=path/to/voucherd (default: a release build of this checkout)
#   DATABASE_URL=postgres://... (PostgreSQL, scratch database)
set -euo pipefail
cd "$(dirname "$0")/.."
SUPPLY="${1:-5000000}"
SECONDS_EACH="${2:-30}"
CONNECTIONS="${CONNECTIONS:-16}"
PORT=18530
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
OTHER_SUPPLY="${OTHER_SUPPLY:-2000000}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p voucherd >/dev/null
  BIN=target/release/voucherd
fi
. bench/lib.sh
WORK=$(mktemp -d)
SERVER=""
WATCH=""
SCRATCH_DB=""
cleanup() {
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  wait 2>/dev/null
  [ -n "$SCRATCH_DB" ] && psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $SCRATCH_DB" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
STORE_ARGS=(--data-dir "$WORK/data")
if [ -n "${DATABASE_URL:-}" ]; then
  SCRATCH_DB="voucherd_publish_$$"
  psql "$DATABASE_URL" -qc "CREATE DATABASE $SCRATCH_DB" >/dev/null
  STORE_ARGS+=(--database-url "${DATABASE_URL%/*}/$SCRATCH_DB")
fi
RUST_LOG=warn taskset -c 1 "$BIN" serve --listen "127.0.0.1:$PORT" "${STORE_ARGS[@]}" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
node_started "$WORK/out"
[ -n "$SCRATCH_DB" ] && database_tokens "$BIN" "${DATABASE_URL%/*}/$SCRATCH_DB" "$WORK/data" "http://127.0.0.1:$PORT"
URL="http://127.0.0.1:$PORT"
create() { # name supply [on_claim]
  curl -s -X POST "$URL/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"name\":\"$1\",\"kind\":\"coupon\",\"supply\":$2,\"codes\":{\"pattern\":\"????-????-####-####\",\"on_claim\":${3:-false}}}" | json '["id"]'
}
state() { curl -s "$URL/v1/campaigns/$1" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json "$2"; }
claims() { # output [campaign, default the other one]
  taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency -s bench/claim.lua \
    -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$URL/v1/campaigns/${2:-$OTHER}/claims" >"$1"
}
OTHER=$(create other "$OTHER_SUPPLY")
publish_live "$URL" "$OTHER"
claims "$WORK/idle"
ON_CLAIM_JSON=false
[ "${ON_CLAIM:-0}" = 1 ] && ON_CLAIM_JSON=true
BIG=$(create big "$SUPPLY" "$ON_CLAIM_JSON")
START=$(date +%s.%N)
ANSWER=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST "$URL/v1/campaigns/$BIG/publish" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN")
# The publish is watched beside the claims: live is when it leaves draft.
(
  for _ in $(seq 1 36000); do
    now=$(state "$BIG" '["state"]' 2>/dev/null || true)
    if [ -n "$now" ] && [ "$now" != draft ]; then date +%s.%N >"$WORK/live"; exit 0; fi
    sleep 0.5
  done
) &
WATCH=$!
WINDOWS=0
while { [ "$WINDOWS" -eq 0 ] || [ ! -e "$WORK/live" ]; } && [ "$WINDOWS" -lt $((18000 / SECONDS_EACH + 1)) ]; do
  WINDOWS=$((WINDOWS + 1))
  claims "$WORK/busy.$WINDOWS"
done
wait $WATCH
WATCH=""
[ -e "$WORK/live" ] || { echo "campaign $BIG was still a draft after five hours" >&2; exit 1; }
LIVE=$(cat "$WORK/live")
stat() { awk -v what="$2" '$1 == what {print $2}' "$1"; }
echo "store: ${SCRATCH_DB:+PostgreSQL}${SCRATCH_DB:-SQLite}; publish of $SUPPLY codes answered: $ANSWER (status, seconds)"
echo "fully generated and live $(echo "$LIVE - $START" | bc -l | xargs printf '%.1f') s after the publish (codes: $(state "$BIG" '["codes"]["count"]'))"
printf '%-40s %10s %9s %9s %9s\n' "claims on another campaign" "claims/s" p50 p90 p99
row() { # label file
  printf '%-40s %10s %9s %9s %9s\n' "$1" \
    "$(awk '/Requests\/sec/ {print $2}' "$2")" "$(stat "$2" 50%)" "$(stat "$2" 90%)" "$(stat "$2" 99%)"
}
row "idle (wrk -t1 -c$CONNECTIONS ${SECONDS_EACH}s)" "$WORK/idle"
for window in $(seq 1 "$WINDOWS"); do
  row "during, $(( (window - 1) * SECONDS_EACH ))-$(( window * SECONDS_EACH )) s" "$WORK/busy.$window"
done
if [ "$ON_CLAIM_JSON" = true ]; then
  claims "$WORK/own" "$BIG"
  row "claims on the new campaign (minting)" "$WORK/own"
  echo "codes made by its claims: $(state "$BIG" '["codes"]["count"]')"
fi
echo "(the last window may run past the moment the campaign went live)"
if grep -h "Non-2xx\|Socket errors" "$WORK/idle" "$WORK"/busy.* "$WORK"/own 2>/dev/null; then
  echo "FAILED: some claims were not answered 2xx"
  exit 1
fi
echo "every answer 2xx, no socket errors"
