#!/usr/bin/env bash
# Usage: bench/builder_time.sh [BUILD_DIR]   (default: build)
#
# The time `livegraft build` takes for a one-function fix in a real program (Debian's lua5.4,
# tests/builder/real/lua5.4/fix.diff: iter_aux in src/lutf8lib.c) against the project's own
# incremental rebuild of the changed file (the fix applied, `make linux`: compile lutf8lib.c,
# re-archive liblua.a, relink lua and luac). Median of RUNS (default 5) each; prints a table.
# Target (issue 7): livegraft build <= 2 x rebuild + 1 s. Also prints the builder's own step
# timings (copy, build, compiles, diff passes, type layouts, emit) of its last run. The per-case
# figures of the real-world corpus come from tests/realworld/run.sh (docs/realworld.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
build=$(cd "$build" && pwd)
runs=${RUNS:-5}
livegraft=$build/livegraft
[ -x "$livegraft" ] || { echo "no $livegraft: build the project first" >&2; exit 1; }
case_dir=$root/tests/builder/real/lua5.4
cache=${LIVEGRAFT_DEBIAN_SOURCES:-$build/debian-sources}
work=$build/bench-builder-time
rm -rf "$work"
mkdir -p "$work"

tree=$("$root/scripts/fetch-debian-source.sh" lua5.4 "$cache" | tail -n 1)
"$case_dir/prepare.sh" "$tree" "$work/lua"
echo "building lua5.4 (make linux) ..." >&2
make -C "$work/lua" linux >"$work/full-build.log" 2>&1
lines=$(cat "$work"/lua/src/*.[ch] | wc -l)

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# livegraft build against the built binary (the same bytes as a running interpreter's /proc/PID/exe).
: >"$work/build-times"
for i in $(seq "$runs"); do
  t0=$(now)
  "$livegraft" build --source "$work/lua" --diff "$case_dir/fix.diff" --target "$work/lua/src/lua" \
    --build-command 'make linux' -o "$work/fix.o" >"$work/livegraft-build.log" 2>&1
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$work/build-times"
done

# The project's incremental rebuild: apply the fix, make (timed); take it back, make (untimed).
cp -a "$work/lua" "$work/lua-incr"  # -a: keep the timestamps, so make rebuilds only what changed
: >"$work/rebuild-times"
for i in $(seq "$runs"); do
  (cd "$work/lua-incr" && patch -p1 --batch --quiet <"$case_dir/fix.diff")
  t0=$(now)
  make -C "$work/lua-incr" linux >"$work/incremental.log" 2>&1
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$work/rebuild-times"
  (cd "$work/lua-incr" && patch -R -p1 --batch --quiet <"$case_dir/fix.diff")
  make -C "$work/lua-incr" linux >/dev/null 2>&1
done

b=$(median <"$work/build-times")
r=$(median <"$work/rebuild-times")
target=$(awk -v r="$r" 'BEGIN { printf "%.3f", 2 * r + 1 }')
verdict=$(awk -v b="$b" -v t="$target" 'BEGIN { print (b <= t) ? 1 : 0 }')
printf '\nlua5.4 %s (%s lines of C in src/), one-function fix (iter_aux, src/lutf8lib.c), median of %s runs\n' \
  "$(basename "$tree")" "$lines" "$runs"
printf '%-44s %10s   %s\n' "what" "median s" "all runs (s)"
printf '%-44s %10.3f   %s\n' "livegraft build (make linux, recorded)" "$b" "$(tr '\n' ' ' <"$work/build-times" | xargs printf '%.3f ')"
printf '%-44s %10.3f   %s\n' "incremental rebuild (fix applied, make linux)" "$r" "$(tr '\n' ' ' <"$work/rebuild-times" | xargs printf '%.3f ')"
printf '%-44s %10.3f   %s\n' "target: 2 x rebuild + 1 s" "$target" "$([ "$verdict" = 1 ] && echo met || echo NOT met)"
# Where the builder's time went in its last run (its own step timings, `livegraft build` stderr).
printf 'livegraft build steps (last run): %s\n' "$(sed -n 's/.*times: //p' "$work/livegraft-build.log" | tail -n 1)"
printf 'machine: %s, %s cores, %s; load average %s\n' "$(uname -m)" "$(nproc)" "$(gcc --version | head -n 1)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
