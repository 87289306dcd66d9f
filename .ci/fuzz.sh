#!/usr/bin/env bash
# The fuzz targets of fuzz/ (JSON bodies, CSV uploads, code patterns and
# the code space, tokens), each run for a bounded time from its seed corpus.
# A crash, a failed invariant or a hang fails this script; a missing
# toolchain fails it too, never skips it.
#
# Usage: .ci/fuzz.sh            FUZZ_SECONDS=120 .ci/fuzz.sh
#   FUZZ_SECONDS      seconds per target (default 30)
#   FUZZ_TARGET_DIR   where the build goes (default ~/.cache/voucherd/fuzz-target)
#
# Built without a sanitizer (`-s none`), measured on this machine (2 cores,
# shared with another engineer's builds while measured): a cold build took
# 5m13s (4m35s of CPU) without one and 6m53s (7m27s of CPU) with
# AddressSanitizer, and the targets ran far faster without it (runs a
# second, none against address: json_bodies 80,000 / 9,900, token 41,000 /
# 4,000, code_pattern 390,000 / 65,000, csv_upload 6,100 / 5,100). With
# AddressSanitizer the targets that link the bundled SQLite also abort at
# start on an ODR report about two of SQLite's own statics unless
# ASAN_OPTIONS=detect_odr_violation=0. Every crate of ours forbids unsafe
# code, so AddressSanitizer could only catch faults in our dependencies'
# unsafe code; the coverage-guided search and every assertion of the
# targets work the same without it, and debug assertions and overflow
# checks stay on (cargo-fuzz's default).
#
# The build goes outside the clone by default so that the next CI run on
# the same machine rebuilds only what changed (under a minute when only our
# crates did) instead of every dependency; a new machine builds it cold.
# Measured here, the whole script took 7m14s cold (5m07s of it the build)
# and 2m07s warm, with FUZZ_SECONDS=30.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
FUZZ=(cargo +nightly fuzz)
SANITIZER=(--sanitizer none)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "FATAL: the nightly toolchain is missing; cargo-fuzz needs it" >&2
    echo "       install it with: rustup toolchain install nightly --profile minimal" >&2
    exit 1
fi
rustup run nightly rustc --version
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it from crates.io"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/voucherd/fuzz-target}"

# The fuzz crate has a workspace and a lock file of its own; a lock file
# that no longer matches the crates it fuzzes fails here, not in a build
# that quietly resolves new versions.
host=$(rustup run nightly rustc -vV | sed -n 's/^host: //p')
if ! cargo +nightly fetch --manifest-path fuzz/Cargo.toml --locked --target "$host"; then
    echo "FATAL: fuzz/Cargo.lock is out of date with the crates it fuzzes;" >&2
    echo "       refresh it with: cargo +nightly fetch --manifest-path fuzz/Cargo.toml" >&2
    exit 1
fi
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

build_started=$(date +%s)
"${FUZZ[@]}" build "${SANITIZER[@]}"
echo "fuzz build: $(($(date +%s) - build_started))s"

mapfile -t targets < <("${FUZZ[@]}" list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "FATAL: cargo fuzz list found no fuzz targets" >&2
    exit 1
fi

# New inputs go to a scratch copy of each corpus, so a run never dirties
# the tree; the seeds in fuzz/corpus are only read.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
failed=()
for target in "${targets[@]}"; do
    seeds="fuzz/corpus/$target"
    if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
        echo "FATAL: $target has no seed corpus in $seeds" >&2
        exit 1
    fi
    mkdir -p "$SCRATCH/$target"
    echo "-- $target for ${SECONDS_PER_TARGET}s"
    log="$SCRATCH/$target.log"
    # -timeout: an input that takes this long is a hang, and fails the run.
    options=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1)
    if [ -f "fuzz/dict/$target.dict" ]; then
        options+=(-dict="fuzz/dict/$target.dict")
    fi
    if "${FUZZ[@]}" run "${SANITIZER[@]}" "$target" "$SCRATCH/$target" "$seeds" -- \
        "${options[@]}" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        corpus=$(ls "$SCRATCH/$target" | wc -l)
        echo "$target: ${runs:-?} runs, ${rate:-?} exec/s, $corpus new corpus entries"
    else
        # What failed, then libFuzzer's and cargo-fuzz's account of the
        # input (its Base64 outlives CI's clone) and how to replay it.
        grep -m 1 -A 4 "panicked at" "$log" || true
        tail -n 40 "$log"
        echo "FAILED: $target; its input is above and in fuzz/artifacts/$target/" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FATAL: fuzz targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
