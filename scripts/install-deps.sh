#!/usr/bin/env bash
# Installs what livegraft needs to build and test on Debian 12 (run as root).
set -euo pipefail
pkgs=(build-essential g++ cmake ninja-build pkg-config libelf-dev libdw-dev libzydis-dev libzycore-dev
      libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev patch libc6-dbg spin
      libdebuginfod-dev clang-14 libfuzzer-14-dev)  # clang/libFuzzer: the fuzzers (docs/fuzzing.md)
pkgs+=(libcap2-bin)  # setcap: the privilege e2e tests give a target file capabilities
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "install as root: apt-get install ${missing[*]}" >&2; exit 1; fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
