#!/usr/bin/env bash
# Operations checks (issue 14), non-interactive, as root, under ~3 minutes:
#
#  1. promtool check rules and promtool test rules (deploy/prometheus);
#  2. every metric named by the rules and the dashboard is exposed, with a
#     sample, by a running node: one on SQLite with three gateway
#     simulators and some traffic (campaigns, claims, checkouts), and one
#     on PostgreSQL (its pool metrics);
#  3. cfn-lint on deploy/aws/*.yaml;
#  4. kubernetes-validate on deploy/kubernetes/*.yaml (its bundled schemas);
#  5. deploy/local/test.sh: the three-node deployment up, a claim through
#     haproxy, every target up in Prometheus, a SIGKILLed node's alert
#     firing, down.sh leaving nothing running.
#
#   bash .ci/ops.sh target/debug/voucherd
#
# What it needs it installs (apt: haproxy prometheus; pip: cfn-lint
# kubernetes-validate); whatever cannot be had fails the run, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="${1:?the voucherd binary, e.g. target/debug/voucherd}"
[[ -x "$BIN" ]] || { echo "FAIL: $BIN is not an executable" >&2; exit 1; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
. deploy/local/lib.sh
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
started=$SECONDS
section() { printf '\n== ops [%3ds] %s\n' "$((SECONDS - started))" "$*"; }

section "tools"
missing_apt=()
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing_apt+=(haproxy)
command -v prometheus >/dev/null || missing_apt+=(prometheus)
command -v promtool >/dev/null || missing_apt+=(prometheus)
command -v psql >/dev/null || missing_apt+=(postgresql-client)
if ((${#missing_apt[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_apt[@]}"
fi
missing_pip=()
command -v cfn-lint >/dev/null || missing_pip+=(cfn-lint)
command -v kubernetes-validate >/dev/null || missing_pip+=(kubernetes-validate)
python3 -c 'import yaml' 2>/dev/null || missing_pip+=(pyyaml)
if ((${#missing_pip[@]})); then
  python3 -m pip install --quiet "${missing_pip[@]}"
  hash -r
fi
export PATH="$PATH:/usr/sbin"
for tool in haproxy prometheus promtool psql createdb cfn-lint kubernetes-validate curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
pg_isready -q || { echo "FAIL: PostgreSQL at $PGHOST:$PGPORT does not answer" >&2; exit 1; }

section "promtool"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/tests/*.yml

section "every metric of the rules and the dashboard is exposed"
WORK="$(mktemp -d /tmp/voucherd-ops.XXXXXX)"
DB="voucherd_ops_$$"
finish() {
  local status=$?
  stop_pids "$WORK" >/dev/null 2>&1 || true
  dropdb --if-exists "$DB" 2>/dev/null || true
  if ((status != 0)); then
    for log in "$WORK"/*.log; do echo "== $log" >&2; tail -15 "$log" >&2; done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap finish EXIT
GATEWAYS=()
for number in 1 2 3; do
  start "gw$number" "$WORK" "$BIN" gateway-sim --listen 127.0.0.1:0 --rate 100 \
    --latency-ms 5..20 --decline-rate 0.1 --timeout-rate 0 --seed "$number"
  GATEWAYS+=(--gateway "name=gw$number,url=http://$(listening_on "$WORK/gw$number.out" 20),rate=100,priority=$number")
done
mkdir -p "$WORK/sqlite"
start sqlite "$WORK" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/sqlite" "${GATEWAYS[@]}"
SQLITE_NODE=$(listening_on "$WORK/sqlite.out" 60)
wait_http "http://$SQLITE_NODE/readyz" 30
ADMIN=$(wait_line "$WORK/sqlite.out" '^export VOUCHERD_ADMIN_TOKEN=' 10 | cut -d= -f2-)
SERVICE=$(wait_line "$WORK/sqlite.out" '^export VOUCHERD_SERVICE_TOKEN=' 10 | cut -d= -f2-)
python3 deploy/local/traffic.py "http://$SQLITE_NODE" "$ADMIN" "$SERVICE" --claims 12
createdb "$DB"
mkdir -p "$WORK/postgres"
start postgres "$WORK" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/postgres" \
  --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" "${GATEWAYS[@]}"
POSTGRES_NODE=$(listening_on "$WORK/postgres.out" 60)
wait_http "http://$POSTGRES_NODE/readyz" 30
# One refresh at least, so that the refresh and store gauges have moved.
sleep 1.5
curl -fsS "http://$SQLITE_NODE/metrics" >"$WORK/sqlite.metrics"
curl -fsS "http://$POSTGRES_NODE/metrics" >"$WORK/postgres.metrics"
python3 .ci/metric_names.py deploy/prometheus/rules.yml deploy/grafana/voucherd.json \
  "$WORK/sqlite.metrics" "$WORK/postgres.metrics"
stop_pids "$WORK"
dropdb "$DB"

section "cfn-lint"
shopt -s nullglob
templates=(deploy/aws/*.yaml)
((${#templates[@]})) || { echo "FAIL: no deploy/aws/*.yaml" >&2; exit 1; }
cfn-lint "${templates[@]}"
echo "${#templates[@]} template(s) clean"

section "kubernetes-validate"
manifests=(deploy/kubernetes/*.yaml)
((${#manifests[@]})) || { echo "FAIL: no deploy/kubernetes/*.yaml" >&2; exit 1; }
kubernetes-validate --strict "${manifests[@]}"
shopt -u nullglob

section "deploy/local: up, claim through haproxy, targets up, node-down alert, down"
bash deploy/local/test.sh "$BIN"

section "done in $((SECONDS - started)) s"
