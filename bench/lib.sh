# What the bench scripts share; sourced, not run.

# Reads a field of the JSON on stdin: json '["id"]'.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Publishes campaign $2 on the node at $1 and waits until it is live: a
# publish that must make many codes answers 202 and goes live later.
publish_live() {
  local url=$1 id=$2 state=""
  curl -sf -X POST "$url/v1/campaigns/$id/publish" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" >/dev/null
  for _ in $(seq 1 36000); do
    state=$(curl -sf "$url/v1/campaigns/$id" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN" | json '["state"]')
    [ "$state" != draft ] && return 0
    sleep 0.1
  done
  echo "campaign $id is still a draft an hour after publishing" >&2
  return 1
}

# Waits until the node writing to $1 listens; on the embedded store it
# prints the development tenant's tokens, which are exported.
node_started() {
  local out=$1
  for _ in $(seq 1 150); do grep -q '^voucherd listening on ' "$out" 2>/dev/null && break; sleep 0.2; done
  grep -q '^voucherd listening on ' "$out" || { echo "the node writing $out did not start" >&2; return 1; }
  for _ in $(seq 1 25); do grep -q '^export VOUCHERD_SERVICE_TOKEN\|^no tenant made' "$out" && break; sleep 0.2; done
  eval "$(grep '^export' "$out")"
}

# A production start prints no token: makes a tenant on the database as an
# operator does (voucherd tenant create, voucherd token) and exports its
# admin and service tokens. With NODE_URL, waits until the running node
# there knows the new tenant (it reads tenants once a refresh).
# Usage: database_tokens BIN DATABASE_URL DATA_DIR [NODE_URL]
database_tokens() {
  local bin=$1 url=$2 dir=$3 node=${4:-} tenant
  tenant=$("$bin" tenant create --database-url "$url" --data-dir "$dir" --name "bench-$RANDOM$RANDOM" | awk '/^tenant / {print $2}')
  VOUCHERD_ADMIN_TOKEN=$("$bin" token --database-url "$url" --data-dir "$dir" --tenant "$tenant" --role admin)
  VOUCHERD_SERVICE_TOKEN=$("$bin" token --database-url "$url" --data-dir "$dir" --tenant "$tenant" --role service)
  export VOUCHERD_ADMIN_TOKEN VOUCHERD_SERVICE_TOKEN
  [ -z "$node" ] && return 0
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$node/v1/campaigns" -H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN")" = 200 ] && return 0
    sleep 0.1
  done
  echo "the node at $node did not take the new tenant's token within 10 s" >&2
  return 1
}
