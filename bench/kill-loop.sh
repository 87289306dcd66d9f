#!/usr/bin/env bash
# The kill loops at benchmark strength: claims, and buyers checking out while
# three simulated gateways charge them, on one SQLite node and on PostgreSQL
# (one node for claims, two for payments), each SIGKILLed KILLS times at
# drawn moments and checked after every restart. `.ci/run` runs 5 kills each.
#
# Usage: bench/kill-loop.sh [kills per loop, default 100]
# Needs PostgreSQL at VOUCHERD_TEST_DATABASE_URL (default the local server).
# VOUCHERD_KILL_LOOP_SEED replays a run; each loop prints its seed.
set -euo pipefail
cd "$(dirname "$0")/.."
export VOUCHERD_KILL_LOOP_KILLS="${1:-100}"
export VOUCHERD_TEST_DATABASE_URL="${VOUCHERD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --release --locked -p voucherd --test it kill_loop -- --nocapture --test-threads 1 2>&1 \
  | grep -E '^(kill loop|paid kill loop|sqlite|postgres|test result)|panicked'
