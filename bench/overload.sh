#!/usr/bin/env bash
# Overload: course enrollments (durable claims of an unlimited sale, no
# checkout) at a rate the node sustains, then at three and ten times that
# rate, against one node on the embedded store. Prints each run's summary, the
# answers by status, and the node's peak RSS after each run.
#
# Usage: bench/overload.sh [sustainable rate per second, default 3000] [seconds, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-3000}"
SECONDS_OF_ARRIVALS="${2:-30}"
cargo build --release -p voucherd -p voucherd-load >/dev/null
BIN=target/release
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n 20000
# The generator's pool (4,096 connections) is larger than the node's
# requests in flight (1,024), so the crowd reaches the node's bounds rather
# than queueing in the generator.
# Bounds tuned to shed early: what cannot be served within about a second
# is refused at once with 503 and Retry-After instead of waiting in line.
RUST_LOG=warn "$BIN/voucherd" serve --listen 127.0.0.1:18720 --data-dir "$WORK/data" \
  --requests-in-flight-max 1024 --claim-queue-max 1024 >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
for _ in $(seq 1 100); do grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/out" 2>/dev/null && break; sleep 0.2; done
if ! grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/out"; then
  echo "the node did not start:" >&2; cat "$WORK/err" >&2; exit 1
fi
eval "$(grep '^export' "$WORK/out")"
for rate in "$RATE" "$((RATE * 3))" "$((RATE * 10))"; do
  echo "== $rate enrollments a second for ${SECONDS_OF_ARRIVALS} s"
  "$BIN/voucherd-load" enrollment --target http://127.0.0.1:18720 --checkout false \
    --duration "${SECONDS_OF_ARRIVALS}s" --rate-curve "$rate" --retries-max 0 --in-flight-max "${IN_FLIGHT_MAX:-100000}" --pool-connections-max 4096 \
    --progress off --out "${OUT:-results/overload}-$rate" | grep -vE "^\s+\[pass\]" || true
  echo "node peak RSS so far: $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$SERVER/status")"
  kill -0 "$SERVER" && echo "node still running"
done
