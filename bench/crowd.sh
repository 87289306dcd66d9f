#!/usr/bin/env bash
# A crowd of new users, each one new connection with one request, against
# one node on the embedded store with its default flags: h2load opens
# RATE connections a second for SECONDS seconds, each sending one request,
# against a sold-out campaign's claim (answered 410 from memory) and the
# campaign's view. The node runs on core 0, h2load on core 1.
#
# Usage: bench/crowd.sh [seconds] [rate ...]   (defaults: 10; 2000 5000 16700)
# Needs: h2load (apt-get install nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_ARRIVALS="${1:-10}"
shift || true
RATES=("${@:-2000 5000 16700}")
# shellcheck disable=SC2206
RATES=(${RATES[*]})
cargo build --release -p voucherd >/dev/null
BIN=target/release
WORK=$(mktemp -d)
NODE=""
cleanup() {
  [ -n "$NODE" ] && kill "$NODE" 2>/dev/null || true
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 20000

PORT=18790
RUST_LOG=warn taskset -c 0 "$BIN/voucherd" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  >"$WORK/node.out" 2>"$WORK/node.err" &
NODE=$!
for _ in $(seq 1 150); do grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/node.out" 2>/dev/null && break; sleep 0.2; done
eval "$(grep '^export' "$WORK/node.out")"
grep '^connections' "$WORK/node.out"
BASE="http://127.0.0.1:$PORT"
auth=(-H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" -H 'Content-Type: application/json')
ID=$(curl -sf -X POST "$BASE/v1/campaigns" "${auth[@]}" \
  -d '{"name": "Crowd", "kind": "coupon", "supply": 1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X POST "$BASE/v1/campaigns/$ID/publish" "${auth[@]}" >/dev/null
curl -sf -X POST "$BASE/v1/campaigns/$ID/claims" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
  -H 'Content-Type: application/json' -d '{"user_id": "first"}' >/dev/null
echo '{"user_id": "crowd"}' >"$WORK/claim.json"

printf '%-6s %-7s %9s %9s %7s %10s %11s %10s %10s %9s\n' what rate sent answered 5xx unanswered "1st mean" "1st max" "conn max" "node CPU"
for rate in "${RATES[@]}"; do
  total=$((rate * SECONDS_OF_ARRIVALS))
  for what in claim view; do
    case "$what" in
      claim) args=(-d "$WORK/claim.json" -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN"
                   -H 'Content-Type: application/json' "$BASE/v1/campaigns/$ID/claims") ;;
      view) args=(-H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$BASE/v1/campaigns/$ID") ;;
    esac
    before=$(awk '{print $14 + $15}' "/proc/$NODE/stat")
    # h2load starts -r connections at the start of each --rate-period:
    # a tenth of the rate every 100 ms.
    taskset -c 1 h2load --h1 -t1 -c "$total" -r "$((rate / 10))" --rate-period 100ms -n "$total" -T 30 \
      "${args[@]}" >"$WORK/h2load.out" 2>&1 || true
    after=$(awk '{print $14 + $15}' "/proc/$NODE/stat")
    python3 - "$what" "$rate" "$total" "$(( (after - before) ))" "$(getconf CLK_TCK)" "$WORK/h2load.out" <<'PY'
import re, sys
what, rate, total, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
text = open(sys.argv[6]).read()
def grab(pattern, default="?"):
    match = re.search(pattern, text)
    return match.group(1) if match else default
done = int(grab(r"requests: \d+ total, \d+ started, (\d+) done", "0"))
status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
answered = sum(int(x) for x in status.groups()) if status else 0
fivexx = int(status.group(4)) if status else 0
first = re.search(r"time to 1st byte:\s+(\S+)\s+(\S+)\s+(\S+)", text)
connect = re.search(r"time for connect:\s+(\S+)\s+(\S+)\s+(\S+)", text)
print(f"{what:<6} {rate:<7} {total:>9} {answered:>9} {fivexx:>7} {total - answered:>10} "
      f"{first.group(3) if first else '?':>11} {first.group(2) if first else '?':>10} "
      f"{connect.group(2) if connect else '?':>10} {ticks / hz:>8.1f}s")
PY
  done
done
echo "node peak RSS: $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$NODE/status")"
