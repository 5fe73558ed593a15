#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 60 s each) and print
# what each did: executions, corpus size, crashes.
#
#   fuzz/run.sh [seconds] [target ...]
#
# Needs cargo-fuzz (cargo install cargo-fuzz); the machine's stable
# toolchain is told to accept cargo-fuzz's unstable sanitizer flags with
# RUSTC_BOOTSTRAP=1.  The committed seeds in fuzz/corpus/<target> are read,
# not written: what the fuzzer finds goes to a scratch directory.  A crash
# leaves its input in fuzz/artifacts/<target>/ and makes this script fail;
# each one becomes a regression test in the crate.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

export RUSTC_BOOTSTRAP=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo fuzz build --release >/dev/null 2>"$scratch/build.log" || {
    cat "$scratch/build.log"; exit 1; }

failed=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if cargo fuzz run --release "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        verdict=ok
    else
        verdict=CRASH
        failed=1
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5 || true
    fi
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    corpus=$(ls "$scratch/$t" | wc -l)
    printf '%-18s %s: %s executions in %ss, %s new corpus entries\n' "$t" "$verdict" "$runs" "$seconds" "$corpus"
done
exit $failed
