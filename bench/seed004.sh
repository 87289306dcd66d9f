#!/usr/bin/env bash
# Seed 004: course enrollments must not slow the admin down, and admin bulk
# work must not slow enrollments. One sitting on one node (embedded store,
# node on core 1, load and admin client on core 0):
#   1. admin work, one request at a time: a report of a course, then the
#      publish of a new course of PUBLISH_SUPPLY generated seats (answered
#      when it is live), over and over; idle, then during an enrollment
#      burst (wrk -c64 claims on another course);
#   2. enrollments (wrk -c16) idle, then while the admin exports a course's
#      vouchers and uploads codes in a loop.
# Every admin answer must be 200 and every enrollment 2xx, or it fails.
# Usage: bench/seed004.sh [seconds, default 20]
#   BULK=both|upload|export (what the admin's bulk work is, default both)
#   COURSE_SUPPLY=1000000 (the course enrolled in)
#   PUBLISH_SUPPLY=10000 (each course the admin publishes in part 1)
#   BIN=path/to/voucherd (default: a release build of this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
BULK="${BULK:-both}"
COURSE_SUPPLY="${COURSE_SUPPLY:-1000000}"
PUBLISH_SUPPLY="${PUBLISH_SUPPLY:-10000}"
PORT=18550
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -p voucherd >/dev/null
  BIN=target/release/voucherd
fi
. bench/lib.sh
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
RUST_LOG=warn taskset -c 1 "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
node_started "$WORK/out"
URL="http://127.0.0.1:$PORT"
ADMIN=(-H "Authorization: Bearer $VOUCHERD_ADMIN_TOKEN")
# The first "id" of the JSON on stdin, without a Python for each call:
# the admin's client shares the load's core.
first_id() { grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4; }
# Makes a draft course of $2 generated seats; prints its id.
course() {
  curl -s -X POST "$URL/v1/campaigns" "${ADMIN[@]}" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"kind\":\"coupon\",\"supply\":$2,\"codes\":{\"pattern\":\"????-????-####\"}}" | first_id
}
COURSE=$(course "Rust for admins" "$COURSE_SUPPLY"); publish_live "$URL" "$COURSE"
REPORTED=$(course "Reported course" 50000); publish_live "$URL" "$REPORTED"
# Enough enrollments in the reported course that its report has work to do.
taskset -c 0 wrk -t1 -c16 -d5s -s bench/claim.lua -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" \
  "$URL/v1/campaigns/$REPORTED/claims" >/dev/null

# Admin work for $1 seconds, one request at a time: a report, then the
# publish of a new course (its draft made first, untimed), over and over.
# Each answer goes to $2 as "kind status seconds".
admin_work() {
  local end=$((SECONDS + $1)) out=$2 draft
  : >"$out"
  while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null -w 'report %{http_code} %{time_total}\n' "$URL/v1/campaigns/$REPORTED/report" "${ADMIN[@]}" >>"$out"
    draft=$(course "Published course" "$PUBLISH_SUPPLY")
    curl -s -o /dev/null -w 'publish %{http_code} %{time_total}\n' -X POST "$URL/v1/campaigns/$draft/publish" "${ADMIN[@]}" >>"$out"
  done
}
# "kind: N answers, p50, p99" of each kind in $1; fails on an answer not 200.
percentiles() { python3 -c "
import sys
answers = [line.split() for line in open(sys.argv[1]) if line.strip()]
wrong = [a for a in answers if a[1] != '200']
if wrong:
    sys.exit(f'FAILED: admin answers not 200: {wrong[:5]}')
for kind in ('report', 'publish'):
    values = sorted(float(a[2]) * 1000 for a in answers if a[0] == kind)
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    print(f'{kind} {len(values)} answers, p50 {at(0.5):.1f} ms, p99 {at(0.99):.1f} ms', end='; ')
print()" "$1"; }
enrollments() { # connections output
  taskset -c 0 wrk -t1 -c"$1" -d"${SECONDS_EACH}s" --latency -s bench/claim.lua \
    -H "Authorization: Bearer $VOUCHERD_SERVICE_TOKEN" "$URL/v1/campaigns/$COURSE/claims" >"$2"
}
summary() { awk '/Requests\/sec/ {r=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {printf "%s enrollments/s, p50 %s, p99 %s\n", r, p50, p99}' "$1"; }

echo "== 1. admin reports and publishes of $PUBLISH_SUPPLY seats, idle and during an enrollment burst (wrk -t1 -c64 ${SECONDS_EACH}s)"
(taskset -cp 0 $BASHPID >/dev/null && admin_work "$SECONDS_EACH" "$WORK/admin-idle")
ADMIN_IDLE=$(percentiles "$WORK/admin-idle")
echo "idle:         $ADMIN_IDLE"
enrollments 64 "$WORK/burst" &
BURST=$!
sleep 1
# The admin's work ends before the burst does, so that all of it is
# measured during the burst.
(taskset -cp 0 $BASHPID >/dev/null && admin_work $((SECONDS_EACH - 3)) "$WORK/admin-busy")
wait $BURST
ADMIN_BUSY=$(percentiles "$WORK/admin-busy")
echo "during burst: $ADMIN_BUSY  (the burst: $(summary "$WORK/burst"))"

echo "== 2. enrollments (wrk -t1 -c16 ${SECONDS_EACH}s), idle and during admin bulk work ($BULK)"
enrollments 16 "$WORK/enrol-idle"
echo "idle:         $(summary "$WORK/enrol-idle")"
# Bulk work: export the reported course page by page and upload 10,000
# codes to a draft, over and over until the enrollments end. The uploads'
# files are made before the window, and the admin's client runs on the
# load's core, so that neither takes the node's core from it.
mkdir -p "$WORK/codes"
python3 -c "
import sys
for draft in range(1, 201):
    with open(f'{sys.argv[1]}/{draft}.csv', 'w') as out:
        out.write('code\n' + ''.join(f'BULK-{draft}-{n:05d}\n' for n in range(10000)))" "$WORK/codes"
DRAFT_N=0
bulk() {
  local end=$((SECONDS + SECONDS_EACH))
  while [ $SECONDS -lt $end ]; do
    if [ "$BULK" != upload ]; then
      curl -s -o /dev/null -w 'export %{http_code}\n' "$URL/v1/campaigns/$REPORTED/vouchers?limit=10000&format=csv" "${ADMIN[@]}" >>"$WORK/bulk-log"
    fi
    [ "$BULK" = export ] && continue
    DRAFT_N=$((DRAFT_N + 1))
    local draft
    draft=$(curl -s -X POST "$URL/v1/campaigns" "${ADMIN[@]}" -H 'Content-Type: application/json' \
      -d '{"name":"upload","kind":"coupon","supply":10000,"codes":{"upload":true}}' | first_id)
    [ -e "$WORK/codes/$DRAFT_N.csv" ] || { echo "more than 200 uploads in the window: make more files" >&2; exit 1; }
    curl -s -o /dev/null -w 'upload %{http_code}\n' -X POST "$URL/v1/campaigns/$draft/codes" "${ADMIN[@]}" -H 'Content-Type: text/csv' --data-binary @"$WORK/codes/$DRAFT_N.csv" >>"$WORK/bulk-log"
  done
}
(taskset -cp 0 $BASHPID >/dev/null && bulk) &
BULK_PID=$!
enrollments 16 "$WORK/enrol-busy"
wait $BULK_PID
echo "during bulk:  $(summary "$WORK/enrol-busy")   (admin answers meanwhile: $(sort "$WORK/bulk-log" | uniq -c | awk '{printf "%s %s x%s; ", $2, $3, $1}'))"
if grep -v ' 20[01]$' "$WORK/bulk-log"; then
  echo "FAILED: some of the admin's bulk work was not answered 200 or 201"
  exit 1
fi
if grep -h "Non-2xx\|Socket errors" "$WORK"/burst "$WORK"/enrol-*; then
  echo "FAILED: some enrollments were not answered 2xx (a course sold out measures sold-out answers: raise COURSE_SUPPLY)"
  exit 1
fi
echo "every enrollment answered 2xx, no socket errors"
