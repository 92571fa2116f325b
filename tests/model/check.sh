#!/bin/sh
# Checks tests/model/transition.pml with spin: ./check.sh pass|fail [-DNAME...]
# pass: no assertion can fail; fail: spin must find a violation (the model can fail).
set -eu
expect=$1; shift
src=$(cd "$(dirname "$0")" && pwd)/transition.pml
command -v spin >/dev/null || { echo "spin is not installed (scripts/install-deps.sh)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
spin -a "$@" "$src" >/dev/null
cc -O2 -w -DSAFETY -DNOCLAIM -DMEMLIM=2048 -o pan pan.c
./pan -m200000 -E >out.txt 2>&1 || true
errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' out.txt | head -1)
grep -E "errors:|states, stored|assertion violated" out.txt || true
case $expect in
  pass) [ "$errors" = 0 ] && grep -q "max search depth too small" out.txt && { echo "search depth too small"; exit 1; } ; [ "$errors" = 0 ] ;;
  fail) [ -n "$errors" ] && [ "$errors" != 0 ] ;;
esac
