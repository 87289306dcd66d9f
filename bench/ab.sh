#!/usr/bin/env bash
# Two builds of voucherd side by side: the same wrk run against each in
# turn, for a few rounds, so that a change is judged against the noise of
# this shared machine rather than against yesterday's figure.
#
# Usage: bench/ab.sh MODE BIN_A BIN_B [rounds, default 3]
#   MODE soldout   claims of a sold-out campaign (answered from memory)
#   MODE durable   claims that each commit a voucher, embedded store
#   MODE postgres  claims that each commit a voucher, PostgreSQL
# Prints, per round and build: answers/s, committed claims/s, and the
# server's CPU time per answer (user + system, from /proc), which the
# noise moves less than the rate.
# Environment: SECONDS_PER_RUN (10), CONNECTIONS (256), TERMS (characters of
# terms the campaign carries, default none: a real campaign's may be 50,000).
# Make BIN_A from an older commit with, for example:
#   git stash; cargo build --release -p voucherd; cp target/release/voucherd /tmp/voucherd-a; git stash pop
# Needs: wrk; PostgreSQL at 127.0.0.1:5432 for MODE postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:?MODE: soldout, durable or postgres}"
BINS=("${2:?BIN_A}" "${3:?BIN_B}")
ROUNDS="${4:-3}"
DURATION="${SECONDS_PER_RUN:-10}"
CONNECTIONS="${CONNECTIONS:-256}"
PORT=18560
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
WORK=$(mktemp -d)
SERVER=""
DB=""
drop_db() {
  [ -n "$DB" ] && psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  DB=""
}
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; drop_db || true; rm -rf "$WORK"; }
trap cleanup EXIT
. bench/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }

# one BIN: starts it on a fresh store, runs wrk, prints one line.
one() {
  local bin=$1 dir="$WORK/data-$RANDOM" store supply
  store=(--data-dir "$dir")
  if [ "$MODE" = postgres ]; then
    DB="voucherd_ab_$RANDOM$RANDOM"
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
    store+=(--database-url "postgres://postgres@127.0.0.1:5432/$DB")
  fi
  RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$PORT" "${store[@]}" >"$dir.out" 2>"$dir.err" &
  SERVER=$!
  node_started "$dir.out"
  [ "$MODE" = postgres ] && database_tokens "$bin" "postgres://postgres@127.0.0.1:5432/$DB" "$dir" "http://127.0.0.1:$PORT"
  local url="http://127.0.0.1:$PORT" id terms=""
  supply=$([ "$MODE" = soldout ] && echo 1 || echo 500000)
  [ -n "${TERMS:-}" ] && terms=",\"terms\":\"$(head -c "$TERMS" /dev/zero | tr '\0' t)\""
  id=$(curl -s -X POST "$url/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"name\":\"ab\",\"kind\":\"coupon\",\"supply\":$supply$terms}" | json '["id"]')
  [ -n "$id" ] || { echo "the campaign was not made" >&2; exit 1; }
  publish_live "$url" "$id"
  if [ "$MODE" = soldout ]; then
    curl -s -X POST "$url/v1/campaigns/$id/claims" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
      -H 'Content-Type: application/json' -d '{"user_id":"first"}' >/dev/null
  fi
  local before after rate committed
  before=$(cpu_ticks)
  rate=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/claim.lua \
    -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$url/v1/campaigns/$id/claims" | awk '/Requests\/sec/ {print $2}')
  after=$(cpu_ticks)
  committed=$(curl -s "$url/v1/campaigns/$id/report" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json '["issued_total"]')
  printf '%-6s %-28s %12.0f %12.0f %14.1f\n' "$round" "$(basename "$bin")" "$rate" \
    "$(echo "$committed / $DURATION" | bc -l)" \
    "$(echo "($after - $before) * 1000000 / $(getconf CLK_TCK) / ($rate * $DURATION)" | bc -l)"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
  drop_db || true
}

printf '%-6s %-28s %12s %12s %14s\n' round build answers/s committed/s "cpu us/answer"
for round in $(seq 1 "$ROUNDS"); do
  for bin in "${BINS[@]}"; do one "$bin"; done
done
