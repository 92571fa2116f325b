#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every test (unit, builder, e2e).
# With SANITIZE=1 it builds with ASan+UBSan into build-asan and runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${SANITIZE:-0}" = 1 ]; then
  export BUILD_DIR=build-asan
  scripts/build.sh -DLIVEGRAFT_SANITIZE=ON -DLIVEGRAFT_WERROR=ON
else
  scripts/build.sh -DLIVEGRAFT_WERROR=ON
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 "$@"
