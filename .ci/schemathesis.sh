#!/usr/bin/env bash
# The OpenAPI document held to the server by a tool no one here wrote:
# schemathesis generates requests from /openapi.json and checks every
# answer against it (status codes, content types, headers, schemas), as
# the admin, the service and a customer, against the real binary on the
# embedded store with its demo campaign.
#
# Usage: .ci/schemathesis.sh [path to the voucherd binary] [examples per operation]
# Checks not run, and why:
#   - positive_data_acceptance: the schemas say what is well-formed, not
#     what the state allows; a well-formed claim on a campaign that is sold
#     out, not started or of another tenant is rightly refused with 4xx;
#     and the schemas cannot state the rules across fields (a sale needs a
#     price, tiers must rise, ends_at comes after starts_at).
# Phases: examples, fuzzing and stateful. The coverage phase is left out:
# in schemathesis 4.32.5 it fails now and then inside schemathesis itself
# (a KeyError under hypothesis' FlakyFailure) while generating bodies for
# POST /v1/campaigns, which would make this check fail for no fault of
# the server's.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/voucherd}"
EXAMPLES="${2:-25}"
command -v st >/dev/null || pip install -q 'schemathesis==4.32.5'
WORK=$(mktemp -d)
NODE=""
cleanup() {
  [ -n "$NODE" ] && kill "$NODE" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --demo >"$WORK/out" 2>"$WORK/err" &
NODE=$!
for _ in $(seq 1 150); do grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/out" 2>/dev/null && break; sleep 0.2; done
grep -q '^export VOUCHERD_SERVICE_TOKEN' "$WORK/out" || { echo "FATAL: voucherd did not start" >&2; cat "$WORK/err" >&2; exit 1; }
eval "$(grep '^export' "$WORK/out")"
BASE=$(sed -n 's/^voucherd listening on //p' "$WORK/out")
CUSTOMER=$("$BIN" token --data-dir "$WORK/data" --role customer --user st-customer)

failed=0
for role in admin service customer; do
  case "$role" in
    admin) token="$VOUCHERD_ADMIN_TOKEN" ;;
    service) token="$VOUCHERD_SERVICE_TOKEN" ;;
    customer) token="$CUSTOMER" ;;
  esac
  echo "== schemathesis as $role"
  if ! st run "$BASE/openapi.json" --checks all \
      --exclude-checks positive_data_acceptance \
      --phases examples,fuzzing,stateful \
      --max-examples "$EXAMPLES" --seed 9 --workers 2 --request-timeout 10 \
      --no-color --header "Authorization: Bearer $token"; then
    failed=1
  fi
done
kill -0 "$NODE" || { echo "FATAL: voucherd died under schemathesis" >&2; exit 1; }
exit "$failed"
