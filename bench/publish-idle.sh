#!/usr/bin/env bash
# How long publishing takes on an idle node (embedded store, node on core
# 1): one course of BIG generated codes (answered 202, timed until live),
# then N courses of SUPPLY codes, each publish answered when live.
# Usage: bench/publish-idle.sh   BIG=300000 SUPPLY=10000 N=3 BIN=path/to/voucherd
set -euo pipefail
cd "$(dirname "$0")/.."
BIG="${BIG:-300000}"; SUPPLY="${SUPPLY:-10000}"; N="${N:-3}"; PORT=18560
if [ -z "${BIN:-}" ]; then
  cargo build --release -p voucherd >/dev/null
  BIN=target/release/voucherd
fi
. bench/lib.sh
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
RUST_LOG=warn taskset -c 1 "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
node_started "$WORK/out"
URL="http://127.0.0.1:$PORT"
ADMIN=(-H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN")
course() {
  curl -sf -X POST "$URL/v1/campaigns" "${ADMIN[@]}" -H 'Content-Type: application/json' \
    -d "{\"name\":\"c\",\"kind\":\"coupon\",\"supply\":$1,\"codes\":{\"pattern\":\"????-????-####\"}}" | json '["id"]'
}
ID=$(course "$BIG")
START=$(date +%s.%N)
publish_live "$URL" "$ID"
echo "$BIG codes live after $(echo "$(date +%s.%N) - $START" | bc -l | xargs printf '%.1f') s"
for _ in $(seq 1 "$N"); do
  ID=$(course "$SUPPLY")
  ANSWER=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST "$URL/v1/campaigns/$ID/publish" "${ADMIN[@]}")
  [ "${ANSWER%% *}" = 200 ] || { echo "FAILED: publishing $SUPPLY codes answered $ANSWER" >&2; exit 1; }
  echo "$SUPPLY codes: publish answered ${ANSWER#* } s (live)"
done
