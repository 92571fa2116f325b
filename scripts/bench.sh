#!/usr/bin/env bash
# Builds and runs the benchmarks (docs/performance.md quotes their output).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DCMAKE_BUILD_TYPE=Release
build/bench/bench_call_overhead --benchmark_repetitions=9 --benchmark_report_aggregates_only=true
build/bench/bench_stop_time --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
