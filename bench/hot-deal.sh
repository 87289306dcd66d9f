#!/usr/bin/env bash
# Seed 000's Hot Deal on this machine: 1,000,000 distinct users over 60 s
# against the embedded store (one node), or against PostgreSQL with two
# nodes, with three simulated gateways of 100 charges a second (the first
# preferred). Prints the load generator's summary and verdict, the peak RSS
# of each node, and how long the payments took from the first to the last.
#
# Usage: bench/hot-deal.sh [sqlite|postgres] [users] [seconds]
# CPU layout (LAYOUT): `pinned` puts the node(s) on core 0 and the
# generator and the simulators on core 1; `shared` (the default) lets the
# kernel place every process on both cores. PostgreSQL, the machine's own
# service, is never pinned. Each process's CPU time is printed at the end.
# Environment: SUPPLY (20000), IN_FLIGHT_MAX (the generator's bound on
# requests in flight, 100000: a request past it fails the run),
# CONNECTIONS (pooled or per-user), POOL_CONNECTIONS_MAX (512 per node),
# DECLINE_RATE (0.02) and TIMEOUT_RATE (0.005)
# of the simulated gateways; a timed-out charge hangs 30 s, then the node
# looks it up and, when it never arrived, charges again.
# Needs: PostgreSQL at 127.0.0.1:5432 for the postgres run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BACKEND="${1:-sqlite}"
USERS="${2:-1000000}"
SECONDS_OF_ARRIVALS="${3:-60}"
SUPPLY="${SUPPLY:-20000}"
cargo build --release -p voucherd -p voucherd-load >/dev/null
BIN=target/release
WORK=$(mktemp -d)
OUT="${OUT:-results/hot-deal-$BACKEND}"
PIDS=()
DB=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null
  [ -n "$DB" ] && psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  mkdir -p "$OUT" && cp "$WORK"/node-*.err "$OUT"/ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 20000
case "${LAYOUT:-shared}" in
  pinned) NODE_CPUS=(taskset -c 0); CLIENT_CPUS=(taskset -c 1) ;;
  shared) NODE_CPUS=(); CLIENT_CPUS=() ;;
  *) echo "LAYOUT is pinned or shared" >&2; exit 2 ;;
esac
echo "layout: ${LAYOUT:-shared}"

GATEWAYS=()
for index in 1 2 3; do
  port=$((19200 + index))
  "${CLIENT_CPUS[@]}" "$BIN/voucherd" gateway-sim --listen "127.0.0.1:$port" --rate 100 --latency-ms 20..200 \
    --decline-rate "${DECLINE_RATE:-0.02}" --timeout-rate "${TIMEOUT_RATE:-0.005}" --seed "$index" >"$WORK/gateway-$index.out" 2>&1 &
  PIDS+=($!)
  GATEWAYS+=("http://127.0.0.1:$port")
done

NODES=1
STORE=(--data-dir "$WORK/data")
if [ "$BACKEND" = postgres ]; then
  NODES=2
  DB="voucherd_hot_deal_$RANDOM$RANDOM"
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
  STORE=(--data-dir "$WORK/data" --database-url "postgres://postgres@127.0.0.1:5432/$DB")
fi
# A gateway's rate is per node: nodes that share a gateway split its rate.
RATE=$((100 / NODES))
TARGETS=()
NODE_PIDS=()
for node in $(seq 1 "$NODES"); do
  port=$((18700 + node))
  flags=()
  for index in 1 2 3; do
    flags+=(--gateway "name=gw$index,url=${GATEWAYS[$((index - 1))]},rate=$RATE,priority=$index")
  done
  RUST_LOG=warn "${NODE_CPUS[@]}" "$BIN/voucherd" serve --listen "127.0.0.1:$port" "${STORE[@]}" "${flags[@]}" \
    >"$WORK/node-$node.out" 2>"$WORK/node-$node.err" &
  NODE_PIDS+=($!)
  PIDS+=($!)
  node_started "$WORK/node-$node.out"
  TARGETS+=(--target "http://127.0.0.1:$port")
done
[ -n "${DB:-}" ] && database_tokens "$BIN/voucherd" "${STORE[3]}" "$WORK/data"

START=$(date +%s.%N)
"${CLIENT_CPUS[@]}" "$BIN/voucherd-load" hot-deal "${TARGETS[@]}" --users "$USERS" --duration "${SECONDS_OF_ARRIVALS}s" \
  --supply "$SUPPLY" --in-flight-max "${IN_FLIGHT_MAX:-100000}" --connections "${CONNECTIONS:-pooled}" \
  --pool-connections-max "${POOL_CONNECTIONS_MAX:-512}" \
  --gateways "$(IFS=,; echo "${GATEWAYS[*]}")" --progress off --out "$OUT" &
LOAD=$!
PIDS+=($LOAD)
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / hz}' "/proc/$1/stat"; }
# The generator's CPU, read just before it exits (it waits for its visits).
LOAD_CPU="?"
while kill -0 "$LOAD" 2>/dev/null; do LOAD_CPU=$(cpu_of "$LOAD" 2>/dev/null || echo "$LOAD_CPU"); sleep 1; done
wait "$LOAD" || true
echo "CPU time: generator $LOAD_CPU (last read), gateways $(for pid in "${PIDS[@]:0:3}"; do cpu_of "$pid"; echo -n ' '; done)"

for node in $(seq 1 "$NODES"); do
  pid=${NODE_PIDS[$((node - 1))]}
  echo "node $node peak RSS: $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status"), CPU time $(cpu_of "$pid")"
done
python3 - "${GATEWAYS[@]}" <<'PY'
import json, sys, urllib.request
from datetime import datetime
times, captured, per_gateway = [], 0, []
for url in sys.argv[1:]:
    ledger = json.load(urllib.request.urlopen(url + "/ledger"))
    charges = ledger["charges"]
    per_gateway.append((url, len(charges), ledger["accepted_per_second_max"]))
    for charge in charges:
        head, _, fraction = charge["at"].rstrip("Z").partition(".")
        times.append(datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]}+00:00"))
        captured += charge["status"] == "captured"
times.sort()
def after_first(share):
    return (times[min(len(times) - 1, int(len(times) * share))] - times[0]).total_seconds() if times else 0
print(f"payments: {len(times)} decided, {captured} captured; from the first: 99 % by {after_first(0.99):.1f} s, "
      f"all by {after_first(1.0):.1f} s (300 tx/s imposes {len(times) / 300:.1f} s for these)")
for url, count, peak in per_gateway:
    print(f"  {url}: {count} charges, at most {peak} in any second")
PY
