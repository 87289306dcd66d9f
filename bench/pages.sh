#!/usr/bin/env bash
# The storefront's crowd pages against GET /healthz, side by side in one
# sitting: a campaign page (what is left, the tier's price, the buy form),
# the same page once sold out, and its bytes. wrk -t1 -c$CONNECTIONS, the
# node on core 1 and wrk on core 0, ROUNDS rounds interleaved.
#
# Usage: bench/pages.sh [seconds per run, default 10]   CONNECTIONS=64 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
ROUNDS="${ROUNDS:-3}"
PORT=18540
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -p voucherd >/dev/null
. bench/lib.sh
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
RUST_LOG=warn taskset -c 1 target/release/voucherd serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
node_started "$WORK/out"
TENANT=$(awk '/^development tenant / {print $3}' "$WORK/out")
URL="http://127.0.0.1:$PORT"
sale() {
  curl -s -X POST "$URL/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"Hot Deal\",\"kind\":\"sale\",\"supply\":$1,\"price\":{\"amount\":150000,\"currency\":\"THB\"},
         \"message\":\"Up to 90 % off\",\"description\":\"A day at the spa.\",\"terms\":\"One per person.\",
         \"tiers\":$2}" | json '["id"]'
}
OPEN=$(sale 20000 '[{"until_rank":1000,"discount_percent":90},{"until_rank":10000,"discount_percent":70},{"until_rank":20000,"discount_percent":50}]')
publish_live "$URL" "$OPEN"
GONE=$(sale 1 '[{"until_rank":1,"discount_percent":90}]')
publish_live "$URL" "$GONE"
curl -s -X POST "$URL/v1/campaigns/$GONE/claims" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
  -H 'Content-Type: application/json' -d '{"user_id":"first"}' >/dev/null
PAGE="$URL/shop/$TENANT/campaigns/$OPEN"
SOLD="$URL/shop/$TENANT/campaigns/$GONE"
curl -s "$SOLD" | grep -q "Sold out" || { echo "the sold-out page does not say so" >&2; exit 1; }
bytes() { curl -s -o /dev/null -w '%{size_download}' "$1"; }
echo "campaign page $(bytes "$PAGE") bytes, sold-out page $(bytes "$SOLD") bytes, site.css $(bytes "$URL/assets/site.css"), site.js $(bytes "$URL/assets/site.js") (uncompressed)"
run() { taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1" >"$2"; }
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '/ 99%/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {n=$5} END {print n+0}' "$1"; }
printf '%-6s %-22s %10s %9s %7s %s\n' round run "answers/s" p99 ratio notes
for round in $(seq 1 "$ROUNDS"); do
  run "$URL/healthz" "$WORK/base"
  run "$PAGE" "$WORK/page"
  run "$SOLD" "$WORK/sold"
  BASE=$(rate "$WORK/base")
  printf '%-6s %-22s %10.0f %9s %7s\n' "$round" "GET /healthz" "$BASE" "$(p99 "$WORK/base")" 1.00
  for kind in page sold; do
    name=$([ $kind = page ] && echo "campaign page" || echo "sold-out page")
    printf '%-6s %-22s %10.0f %9s %7.2f non-2xx %s\n' "$round" "$name" "$(rate "$WORK/$kind")" "$(p99 "$WORK/$kind")" \
      "$(echo "$(rate "$WORK/$kind") / $BASE" | bc -l)" "$(non2xx "$WORK/$kind")"
  done
done
