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
