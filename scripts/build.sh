#!/usr/bin/env bash
# Configures and builds livegraft into ${BUILD_DIR:-build} (extra CMake arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
