#!/usr/bin/env bash
# The local deployment, proved: up.sh brings it up; claims and a checkout
# through haproxy work; Prometheus has every node's target up; a node
# killed with SIGKILL makes VoucherdNodeDown fire; down.sh leaves none of
# the run's processes behind. Every wait is bounded; any miss fails.
#
#   deploy/local/test.sh VOUCHERD_BINARY
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/lib.sh"
BIN="${1:?the voucherd binary}"
export VOUCHERD_LOCAL_DIR="${VOUCHERD_LOCAL_DIR:-$(mktemp -d /tmp/voucherd-local-test.XXXXXX)}"
export VOUCHERD_LOCAL_DB="${VOUCHERD_LOCAL_DB:-voucherd_local_test_$$}"
DIR="$VOUCHERD_LOCAL_DIR"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
started=$SECONDS
step() { printf '[local %3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "--- logs of the failed run ($DIR)" >&2
    for log in "$DIR"/*.log; do echo "== $log" >&2; tail -15 "$log" >&2; done
  fi
  "$HERE/down.sh" >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT

step "up.sh"
"$HERE/up.sh" "$BIN"
. "$DIR/env"
PIDS=$(cat "$DIR"/*.pid)

step "claims and checkouts through haproxy ($VOUCHERD_URL)"
python3 "$HERE/traffic.py" "$VOUCHERD_URL" "$VOUCHERD_ADMIN_TOKEN" "$VOUCHERD_SERVICE_TOKEN" --claims 8

prom() { curl -fsS --max-time 5 "$VOUCHERD_PROMETHEUS_URL$1"; }

step "Prometheus has the three targets up"
deadline=$((SECONDS + 30))
while :; do
  up=$(prom /api/v1/targets | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
print(sum(1 for t in targets if t["labels"].get("job") == "voucherd" and t["health"] == "up"))')
  [[ "$up" == 3 ]] && break
  ((SECONDS < deadline)) || fail "Prometheus reports $up of 3 voucherd targets up"
  sleep 1
done
prom /api/v1/rules | python3 -c '
import json, sys
names = {r["name"] for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]}
assert "VoucherdNodeDown" in names, names
print(f"{len(names)} rules loaded")'

victim=$(cat "$DIR/node2.pid")
step "SIGKILL node2 (pid $victim)"
kill -KILL "$victim"
deadline=$((SECONDS + 60))
while :; do
  firing=$(prom /api/v1/alerts | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print(" ".join(a["labels"].get("instance", "?") for a in alerts
               if a["labels"]["alertname"] == "VoucherdNodeDown" and a["state"] == "firing"))')
  if [[ -n "$firing" ]]; then
    node2=$(echo "$VOUCHERD_NODES" | cut -d' ' -f2)
    [[ "$firing" == "$node2" ]] || fail "VoucherdNodeDown fired for $firing, not node2 ($node2)"
    step "VoucherdNodeDown firing for $firing"
    break
  fi
  ((SECONDS < deadline)) || fail "VoucherdNodeDown did not fire within 60 s of the kill"
  sleep 1
done

step "the two nodes left still serve through haproxy"
python3 "$HERE/traffic.py" "$VOUCHERD_URL" "$VOUCHERD_ADMIN_TOKEN" "$VOUCHERD_SERVICE_TOKEN" --claims 4

step "down.sh"
trap - EXIT
"$HERE/down.sh"
left=""
for pid in $PIDS; do
  kill -0 "$pid" 2>/dev/null && left="$left $pid"
done
[[ -z "$left" ]] || fail "processes of the run still alive:$left"
if psql -Atc "SELECT 1 FROM pg_database WHERE datname = '$VOUCHERD_LOCAL_DB'" postgres | grep -q 1; then
  fail "database $VOUCHERD_LOCAL_DB is still there"
fi
rm -rf "$DIR"
step "passed"
