#!/usr/bin/env bash
# Fuzzes the coordinator's request handling (envelope decoding, validation and the core's
# message handling) with libFuzzer for SECONDS (default 600).
#
#   scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
#
# Builds `colony-fuzz` with -sanitize=fuzzer (in .build-fuzz/, apart from the normal build),
# starts from the seeds the harness writes plus the corpus kept in fuzz-corpus/ (not in git),
# and runs one job per core. An input that traps or breaks an invariant is written to
# fuzz-findings/; copy it into Tests/FuzzRegressions/ so every test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
jobs=$(nproc)

echo "fuzz: building colony-fuzz with -sanitize=fuzzer (release, .build-fuzz/)"
# Fuzz/toolset.json adds -sanitize=fuzzer -DFUZZING and links with lld (gold fails on
# SwiftPM's `--defsym main=colony_fuzz_main` next to libFuzzer's archive).
swift build -c release --product colony-fuzz --build-path .build-fuzz --toolset Fuzz/toolset.json >/dev/null
binary=.build-fuzz/release/colony-fuzz

mkdir -p fuzz-corpus fuzz-findings fuzz-seeds
# The replayer (normal build) writes the seeds: the fuzzing binary has libFuzzer's main.
swift build --product colony-fuzz >/dev/null
.build/debug/colony-fuzz --write-seeds fuzz-seeds >/dev/null

echo "fuzz: running $jobs job(s) for $seconds s"
# -fork keeps going after a finding, so one run reports every distinct one it meets.
# Swift's own backtracer would take the crash signal from libFuzzer, which then saves nothing.
SWIFT_BACKTRACE=enable=no "$binary" fuzz-corpus fuzz-seeds Tests/FuzzRegressions \
    -fork="$jobs" -ignore_crashes=1 -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -artifact_prefix=fuzz-findings/ -print_final_stats=1 "$@" 2>&1 | tee fuzz-last-run.log | grep -E "^#[0-9]+|INFO: fuzzed|crash|leak|timeout|stat::" | tail -40
findings=$(find fuzz-findings -type f | wc -l)
echo "fuzz: $findings finding(s) in fuzz-findings/ (full log: fuzz-last-run.log)"
