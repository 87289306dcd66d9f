#!/usr/bin/env bash
# A whole deployment on one machine: three voucherd nodes on one fresh
# PostgreSQL database, haproxy in front (health checks on /readyz), three
# payment gateway simulators, and Prometheus scraping the nodes with
# deploy/prometheus/rules.yml loaded. The stand-in for deploy/aws/, and
# where the load-test plan of docs/operations.md runs.
#
#   deploy/local/up.sh [VOUCHERD_BINARY]      # default target/release/voucherd, else target/debug
#   deploy/local/down.sh
#
# State (pids, logs, the generated configs, env with URLs and tokens) is in
# $VOUCHERD_LOCAL_DIR (default /tmp/voucherd-local). The database is
# $VOUCHERD_LOCAL_DB (default voucherd_local) on $PGHOST:$PGPORT
# (127.0.0.1:5432, user postgres), dropped and created afresh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/lib.sh"

BIN="${1:-${VOUCHERD_BIN:-}}"
if [[ -z "$BIN" ]]; then
  for candidate in "$ROOT/target/release/voucherd" "$ROOT/target/debug/voucherd"; do
    [[ -x "$candidate" ]] && BIN="$candidate" && break
  done
fi
[[ -x "${BIN:-}" ]] || { echo "FAIL: no voucherd binary; build one or pass its path" >&2; exit 1; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
DIR="${VOUCHERD_LOCAL_DIR:-/tmp/voucherd-local}"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
DB="${VOUCHERD_LOCAL_DB:-voucherd_local}"
export PGHOST PGPORT PGUSER
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
PROMETHEUS="$(command -v prometheus || echo /usr/bin/prometheus)"
for tool in "$HAPROXY" "$PROMETHEUS" psql createdb dropdb curl python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (apt-get install -y haproxy prometheus postgresql-client)" >&2; exit 1; }
done

shopt -s nullglob
for file in "$DIR"/*.pid; do
  if kill -0 "$(cat "$file")" 2>/dev/null; then
    echo "FAIL: $DIR already runs $(basename "$file" .pid) (pid $(cat "$file")); run down.sh first" >&2
    exit 1
  fi
done
shopt -u nullglob
rm -rf "$DIR"
mkdir -p "$DIR"
# Whatever fails from here on stops what was started.
trap 'echo "up.sh failed; stopping what it started" >&2; stop_pids "$DIR" || true' ERR

echo "database $DB on $PGHOST:$PGPORT"
dropdb --if-exists "$DB"
createdb "$DB"
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
echo "$DB" >"$DIR/database"

GATEWAYS=()
GATEWAY_URLS=()
for number in 1 2 3; do
  name=$(printf 'gw%d' "$number")
  start "$name" "$DIR" "$BIN" gateway-sim --listen 127.0.0.1:0 --rate 100 \
    --latency-ms 20..120 --decline-rate 0.02 --timeout-rate 0.005
  address=$(listening_on "$DIR/$name.out" 20)
  GATEWAYS+=(--gateway "name=$name,url=http://$address,rate=100,priority=$number")
  GATEWAY_URLS+=("http://$address")
  echo "gateway $name http://$address"
done

# Nodes on one database share the key queued cards are sealed with.
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$DIR/payment.key"
# The schema first, so that the nodes do not all wait on the migration lock.
"$BIN" migrate --database-url "$DATABASE_URL" >"$DIR/migrate.log" 2>&1
NODES=()
start_node() {
  local name="node$1"
  mkdir -p "$DIR/$name"
  start "$name" "$DIR" "$BIN" serve --database-url "$DATABASE_URL" \
    --listen 127.0.0.1:0 --data-dir "$DIR/$name" --payment-key-file "$DIR/payment.key" \
    "${GATEWAYS[@]}"
}
# node1 alone first: a start on an empty database still makes the
# development tenant, and nodes starting together race to make it (the
# losers exit on the unique name).
start_node 1
listening_on "$DIR/node1.out" 60 >/dev/null
start_node 2
start_node 3
for number in 1 2 3; do
  address=$(listening_on "$DIR/node$number.out" 60)
  NODES+=("$address")
  wait_http "http://$address/readyz" 30
  echo "node$number http://$address"
done

# A tenant for this deployment, and a service token for it.
"$BIN" tenant create --database-url "$DATABASE_URL" --data-dir "$DIR/node1" --name local \
  >"$DIR/tenant.out" 2>"$DIR/tenant.log"
TENANT=$(sed -nE 's/^tenant ([^ ]+)$/\1/p' "$DIR/tenant.out")
ADMIN_TOKEN=$(sed -nE 's/^admin token ([^ ]+)$/\1/p' "$DIR/tenant.out")
SERVICE_TOKEN=$("$BIN" token --database-url "$DATABASE_URL" --data-dir "$DIR/node1" \
  --tenant "$TENANT" --role service 2>>"$DIR/tenant.log" | tail -1)
[[ -n "$TENANT" && -n "$ADMIN_TOKEN" && -n "$SERVICE_TOKEN" ]] || {
  echo "FAIL: could not create the tenant; see $DIR/tenant.*" >&2
  false
}

LB_PORT="${VOUCHERD_LB_PORT:-$(free_port)}"
LB_STATS_PORT="$(free_port)"
export VOUCHERD_LB_ADDRESS="127.0.0.1:$LB_PORT" VOUCHERD_LB_STATS_ADDRESS="127.0.0.1:$LB_STATS_PORT"
export VOUCHERD_NODE1="${NODES[0]}" VOUCHERD_NODE2="${NODES[1]}" VOUCHERD_NODE3="${NODES[2]}"
"$HAPROXY" -c -q -f "$HERE/haproxy.cfg"
start haproxy "$DIR" "$HAPROXY" -db -f "$HERE/haproxy.cfg"
wait_http "http://$VOUCHERD_LB_ADDRESS/readyz" 20

PROM_PORT="${VOUCHERD_PROMETHEUS_PORT:-$(free_port)}"
cat >"$DIR/prometheus.yml" <<YAML
# Made by deploy/local/up.sh: short intervals, so that an alert with
# 'for: 15s' fires within ~20 s of its cause.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/rules.yml
scrape_configs:
  - job_name: voucherd
    static_configs:
      - targets: ['${NODES[0]}', '${NODES[1]}', '${NODES[2]}']
YAML
"$(dirname "$PROMETHEUS")/promtool" check config "$DIR/prometheus.yml" >"$DIR/promtool.log" 2>&1 \
  || { cat "$DIR/promtool.log" >&2; false; }
start prometheus "$DIR" "$PROMETHEUS" --config.file="$DIR/prometheus.yml" \
  --storage.tsdb.path="$DIR/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT" \
  --storage.tsdb.retention.time=1d
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 30

cat >"$DIR/env" <<ENV
export VOUCHERD_URL=http://$VOUCHERD_LB_ADDRESS
export VOUCHERD_LB_STATS_URL=http://$VOUCHERD_LB_STATS_ADDRESS/
export VOUCHERD_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export VOUCHERD_NODES="${NODES[*]}"
export VOUCHERD_GATEWAYS=$(IFS=,; echo "${GATEWAY_URLS[*]}")
export VOUCHERD_DATABASE_URL=$DATABASE_URL
export VOUCHERD_TENANT=$TENANT
export VOUCHERD_ADMIN_TOKEN=$ADMIN_TOKEN
export VOUCHERD_SERVICE_TOKEN=$SERVICE_TOKEN
ENV
trap - ERR
cat <<TEXT

voucherd local deployment is up ($DIR)
  API (haproxy)   http://$VOUCHERD_LB_ADDRESS
  haproxy stats   http://$VOUCHERD_LB_STATS_ADDRESS/
  Prometheus      http://127.0.0.1:$PROM_PORT   (alerts: /alerts)
  nodes           ${NODES[*]}
  tokens and URLs $DIR/env   (. $DIR/env)
  logs            $DIR/*.log
  stop            $HERE/down.sh
TEXT
