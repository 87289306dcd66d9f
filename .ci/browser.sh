#!/usr/bin/env bash
# The storefront and admin console in Debian's Chromium: starts two gateway
# simulators and a node (embedded store, a scratch data directory), makes
# the tenant's admin account, and runs .ci/browser/storefront.mjs
# (playwright-core and axe-core from npm). Screenshots go to
# results/browser/. Installs Chromium and the npm packages when missing;
# fails loudly when they cannot be had.
#
# Usage: .ci/browser.sh path/to/voucherd
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:?the voucherd binary}"
RESULTS="${RESULTS:-$PWD/results/browser}"

# Chromium, and a Thai font so that the Thai pages render as text.
if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi 'thai\|loma\|garuda'; then
    echo "installing Debian's chromium and a Thai font"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-thai-tlwg >/dev/null
fi
/usr/bin/chromium --version
(cd .ci/browser && npm ci --no-audit --no-fund --loglevel=error)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # url what
    for _ in $(seq 1 150); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "FATAL: $2 never answered at $1" >&2
    exit 1
}

GATEWAYS=()
for name in alpha beta; do
    port=$(free_port)
    "$BIN" gateway-sim --listen "127.0.0.1:$port" --decline-rate 0 --timeout-rate 0 --latency-ms 20..200 \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    wait_for "http://127.0.0.1:$port/stats" "gateway simulator $name"
    GATEWAYS+=(--gateway "name=$name,url=http://127.0.0.1:$port,rate=100,priority=${#GATEWAYS[@]}")
done

PORT=$(free_port)
RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" "${GATEWAYS[@]}" \
    >"$WORK/node.out" 2>"$WORK/node.err" &
PIDS+=($!)
for _ in $(seq 1 150); do grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/node.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/node.out" || { cat "$WORK/node.err" >&2; echo "FATAL: the node did not start" >&2; exit 1; }
eval "$(grep '^export' "$WORK/node.out")"
TENANT=$(awk '/^development tenant / {print $3}' "$WORK/node.out")

ADMIN_EMAIL=admin@shop.test
ADMIN_PASSWORD="browser-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
VOUCHERD_ACCOUNT_PASSWORD="$ADMIN_PASSWORD" "$BIN" account create --data-dir "$WORK/data" \
    --email "$ADMIN_EMAIL" --role admin

rm -rf "$RESULTS"
BASE="http://127.0.0.1:$PORT" TENANT="$TENANT" SERVICE_TOKEN="$VOUCHERD_SERVICE_TOKEN" \
    ADMIN_EMAIL="$ADMIN_EMAIL" ADMIN_PASSWORD="$ADMIN_PASSWORD" RESULTS="$RESULTS" \
    timeout 300 node .ci/browser/storefront.mjs || {
        echo "--- node stderr" >&2; tail -50 "$WORK/node.err" >&2
        exit 1
    }
ls "$RESULTS" | wc -l | xargs echo "screenshots:"
