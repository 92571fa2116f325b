#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS (docs/fuzzing.md):  scripts/fuzz.sh TARGET SECONDS [libFuzzer args...]
# TARGET: patch_reader | loader_plan | eh_frame | protocol. The committed seed corpus
# (fuzz/corpus/TARGET) is read, never written: new inputs go to $BUILD_DIR/fuzz/corpus/TARGET, crashes
# to $BUILD_DIR/fuzz/artifacts/. Runs at nice 19 (a shared machine). Exit 77 when the fuzzer is not
# built (clang or libFuzzer missing), 0 when no crash was found, non-zero otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer args...]}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer args...]}
shift 2
bin=$build/fuzz/fuzz_$target
if [ ! -x "$bin" ]; then
  echo "fuzz_$target is not built ($bin): install clang-14 and libfuzzer-14-dev and configure with -DLIVEGRAFT_FUZZ=ON" >&2
  exit 77
fi
seeds=$root/fuzz/corpus/$target
work=$build/fuzz/corpus/$target
mkdir -p "$work" "$build/fuzz/artifacts"
exec nice -n 19 "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=1024 \
  -artifact_prefix="$build/fuzz/artifacts/$target-" "$@" "$work" "$seeds"
