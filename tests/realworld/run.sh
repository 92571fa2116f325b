#!/usr/bin/env bash
# Usage: tests/realworld/run.sh [CASE...]   (default: every case under tests/realworld/cases/)
#
# The real-world corpus: security fixes from the debian/patches/ of Debian 12 source packages.
# For each case (tests/realworld/cases/NAME/case.sh): fetch the source (scripts/fetch-debian-
# source.sh, cached in $LIVEGRAFT_DEBIAN_SOURCES, default /var/cache/livegraft-src), reverse the
# fix to get the vulnerable tree, build it the Debian way (dpkg-buildflags), start the case's
# probe (a program that uses the vulnerable code and answers one line per request), build the
# patch from the real fix with `livegraft build`, apply it live, see the fixed answer, revert,
# see the vulnerable answer again. Also times the project's own incremental rebuild of the fix.
# Prints a table (markdown) on stdout; details per case in $WORK/NAME/ (default
# build/realworld/NAME/).
#
# Environment: BUILD_DIR (livegraft's build, default build), WORK, LIVEGRAFT_DEBIAN_SOURCES;
# REUSE=1: a case whose vulnerable tree an earlier run built ($WORK/NAME/built) is not fetched
# and built again (squid's tree takes an hour on 2 cores), only the rest is run again.
# Exit: 0 every case that ran was patched live, 1 some case failed, 77 no case could run
# (sources unavailable: no apt or no network).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${BUILD_DIR:-$root/build}" && pwd)
livegraft=$build/livegraft
agent=$build/liblivegraft-agent.so
cache=${LIVEGRAFT_DEBIAN_SOURCES:-/var/cache/livegraft-src}
work_root=${WORK:-$build/realworld}
cases_dir=$root/tests/realworld/cases
export REALWORLD=$root/tests/realworld
[ -x "$livegraft" ] && [ -f "$agent" ] || { echo "run.sh: build livegraft and its agent first ($build)" >&2; exit 1; }
mkdir -p "$work_root"
for tool in dpkg-buildflags patch python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed: skipping the corpus" >&2; exit 77; }
done

if [ $# -eq 0 ]; then
  set -- $(cd "$cases_dir" && ls)
fi

now() { date +%s.%N; }
# What dh_auto_configure (debhelper 13, Debian 12) passes to an autotools ./configure, for cases
# that build the way debian/rules does: ./configure $(dh_configure_args) ...
dh_configure_args() {
  local arch
  arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
  printf '%s\n' --build="$arch" --prefix=/usr --includedir=/usr/include --mandir=/usr/share/man \
    --infodir=/usr/share/info --sysconfdir=/etc --localstatedir=/var --disable-option-checking \
    --disable-silent-rules --libdir="/usr/lib/$arch" --runstatedir=/run --disable-maintainer-mode
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
oneline() { tr '\n' ' ' | sed -e 's/|/\\|/g' -e 's/  */ /g' | cut -c1-"${2:-220}"; }

# The probe, talked to through a coprocess: ask prints the answer line to one request.
probe_pid=
start_probe() {
  coproc PROBE { cd "$w" && exec env $PROBE_ENV "$@" 2>>"$w/probe.err"; }
  probe_pid=$PROBE_PID
}
ask() {
  local line=
  # A probe that is a server (the target itself, PROBE_CMD) is asked by the case's probe_ask,
  # a client that prints one answer line.
  if declare -F probe_ask >/dev/null; then
    kill -0 "$probe_pid" 2>/dev/null || { echo "probe gone"; return; }
    line=$(probe_ask "${1:-go}" 2>>"$w/probe.err" | head -n 1)
    echo "${line:-no answer}"
    return
  fi
  echo "${1:-go}" >&"${PROBE[1]}" || { echo "probe gone"; return; }
  if ! IFS= read -r -t 60 line <&"${PROBE[0]}"; then echo "no answer"; return; fi
  echo "$line"
}
stop_probe() {
  if [ -n "$probe_pid" ]; then
    kill -9 "$probe_pid" 2>/dev/null
    wait "$probe_pid" 2>/dev/null
    probe_pid=
  fi
}

rows=()
ran=0 live=0 skipped=0
for case in "$@"; do
  w=$work_root/$case
  reuse=
  if [ "${REUSE:-}" = 1 ] && [ -f "$w/built" ]; then
    reuse=1
    rm -f "$w/result" "$w/answers" "$w/functions" "$w/build_seconds" "$w/incremental_seconds"
  else
    rm -rf "$w"
    mkdir -p "$w"
  fi
  result= functions= build_s= incr_s= target_kind= cve= pkg= bs=
  (
    # Each case in a subshell: its variables and functions are its own.
    set -u
    # The Debian build flags first: a case may use them in its variables.
    eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
    # shellcheck disable=SC1090
    . "$cases_dir/$case/case.sh"
    echo "$PKG|$CVE|$BUILD_SYSTEM|$KIND" >"$w/meta"
    # What the case needs beyond the base tools (NEEDS: Debian package names, e.g. meson or a
    # -dev package): installed when missing and apt can; else the case is skipped.
    missing=()
    for p in ${NEEDS[@]+"${NEEDS[@]}"}; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      sudo_cmd=()
      [ "$(id -u)" = 0 ] || sudo_cmd=(sudo -n)
      if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$w/needs.log" 2>&1; then
        echo "skipped: cannot install ${missing[*]} ($(tail -n 1 "$w/needs.log"))" >"$w/result"
        exit 77
      fi
    fi
    if [ -n "$reuse" ]; then
      cd "$w/src" || exit 1
      # The last run's incremental rebuild left the fix in the tree: out again.
      if [ -f "$w/fix-applied" ]; then
        patch -R -p1 --batch --quiet <"$w/fix.diff" >/dev/null && rm -f "$w/fix-applied" &&
          incremental_build >"$w/build.log" 2>&1 ||
          { echo "reusing the tree: taking the fix out again failed" >"$w/result"; exit 1; }
      fi
    else
      if ! tree=$("$root/scripts/fetch-debian-source.sh" "$PKG" "$cache" 2>"$w/fetch.log" | tail -n 1) || [ -z "$tree" ]; then
        echo "skipped: source unavailable ($(tail -n 1 "$w/fetch.log"))" >"$w/result"
        exit 77
      fi
      cp -a "$tree" "$w/src"
      cd "$w/src" || exit 1
      # The vulnerable tree: every Debian patch but the fix. Like quilt: pop the patches from the
      # end of the series down to the fix, then push the later ones again (as long as they apply
      # without it).
      series=$(sed -e 's/#.*//' debian/patches/series | awk 'NF { print $1 }')
      later=()
      popped=
      for p in $(echo "$series" | tac); do
        patch -R -p1 --batch --quiet <"debian/patches/$p" >>"$w/prepare.log" 2>&1 ||
          { echo "reversing $p failed: $(tail -n 2 "$w/prepare.log" | oneline)" >"$w/result"; exit 1; }
        [ "$p" = "$FIX" ] && { popped=1; break; }
        later=("$p" "${later[@]}")
      done
      [ -n "$popped" ] || { echo "$FIX is not in debian/patches/series" >"$w/result"; exit 1; }
      for p in "${later[@]}"; do
        if ! patch -p1 --batch --quiet --dry-run <"debian/patches/$p" >>"$w/prepare.log" 2>&1; then
          echo "$p does not apply without the fix: left out with the patches after it" >>"$w/prepare.log"
          break
        fi
        patch -p1 --batch --quiet <"debian/patches/$p" >>"$w/prepare.log" 2>&1
      done
      cp "debian/patches/$FIX" "$w/fix.diff"
      if ! build_vulnerable >"$w/build.log" 2>&1; then
        echo "the vulnerable build failed: $(tail -n 3 "$w/build.log" | oneline)" >"$w/result"
        exit 1
      fi
      touch "$w/built"
    fi
    cd "$w" || exit 1
    cp "$cases_dir/$case"/probe.* "$w/" 2>/dev/null
    if ! build_probe >"$w/probe-build.log" 2>&1; then
      echo "the probe did not build: $(tail -n 3 "$w/probe-build.log" | oneline)" >"$w/result"
      exit 1
    fi
    PROBE_ENV=${PROBE_ENV:-}
    start_probe "${PROBE_CMD[@]}"
    trap stop_probe EXIT
    before=$(ask)
    echo "before: $before" >"$w/answers"
    if ! [[ $before =~ $VULNERABLE ]]; then
      echo "the vulnerable build does not show the bug (answer: $before)" >"$w/result"
      exit 1
    fi
    target=$TARGET
    [ "$target" = exe ] && target=/proc/$probe_pid/exe
    [ "${target#/}" = "$target" ] && target=$w/src/$target
    t0=$(now)
    "$livegraft" build --source "$w/src" --diff "$w/fix.diff" --target "$target" -o "$w/fix.o" --json \
      "${LIVEGRAFT_BUILD_ARGS[@]}" >"$w/livegraft-build.json" 2>"$w/livegraft-build.log"
    rc=$?
    t1=$(now)
    elapsed "$t0" "$t1" >"$w/build_seconds"
    python3 - "$w/livegraft-build.json" >"$w/functions" 2>/dev/null <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for f in j.get("functions", []):
    print(f["name"] + ("" if f["status"] == "CHANGED" else " (" + f["status"].lower() + ")"))
PY
    # C++ names demangled without their parameters (c++filt leaves C names as they are), one a
    # line (a template's demangled name has commas of its own); the table shows the first 8 (all
    # of them in functions.all).
    command -v c++filt >/dev/null && { c++filt -p <"$w/functions" >"$w/functions.d" && mv "$w/functions.d" "$w/functions"; }
    cp "$w/functions" "$w/functions.all"
    python3 - "$w/functions.all" >"$w/functions" <<'PY'
import sys
names = [n for n in open(sys.argv[1]).read().split("\n") if n]
print(", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else ""))
PY
    if [ $rc -ne 0 ]; then
      msg=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1])).get("error",""); print(e if isinstance(e, str) else e.get("message",""))' "$w/livegraft-build.json" 2>/dev/null)
      [ -n "$msg" ] || msg=$(grep -v '^livegraft build: ' "$w/livegraft-build.log" | head -n 3)
      echo "build refused: $(echo "$msg" | oneline)" >"$w/result"
      exit 1
    fi
    # A case that defines probe_load (a load generator: requests over loopback, answers classified
    # by VULNERABLE and FIXED) has it run during the apply and the revert, so that the transition
    # happens on busy threads. It is told each step with a signal, SIGRTMIN+1 applied, +2 reverting,
    # +3 reverted (one each: two steps in quick succession cannot merge into one),
    # stopped with SIGTERM, and fails the case (exit status) for a wrong or failed answer (it runs
    # in a subshell of its own: it must exec the generator, so that the signals reach it).
    load_pid=
    if declare -F probe_load >/dev/null; then
      rm -f "$w/load.ready"
      probe_load >"$w/load.log" 2>&1 &
      load_pid=$!
      trap 'stop_probe; [ -z "$load_pid" ] || kill -9 $load_pid 2>/dev/null' EXIT
      for _ in $(seq 300); do [ -f "$w/load.ready" ] || ! kill -0 $load_pid 2>/dev/null && break; sleep 0.1; done
      [ -f "$w/load.ready" ] || { echo "the load generator did not start: $(tail -n 1 "$w/load.log" | oneline)" >"$w/result"; kill $load_pid 2>/dev/null; exit 1; }
    fi
    load_step() { [ -z "$load_pid" ] || kill -s "RTMIN+$1" $load_pid; }
    # LIVEGRAFT_APPLY_ARGS: a case's own apply/revert options (e.g. --allow-stack-switching, with why).
    if ! "$livegraft" apply "$probe_pid" "$w/fix.o" --agent "$agent" ${LIVEGRAFT_APPLY_ARGS[@]+"${LIVEGRAFT_APPLY_ARGS[@]}"} >"$w/apply.log" 2>&1; then
      echo "apply refused: $(grep -v '^$' "$w/apply.log" | head -n 4 | oneline)" >"$w/result"
      exit 1
    fi
    load_step 1
    after=$(ask)
    echo "after apply: $after" >>"$w/answers"
    if ! [[ $after =~ $FIXED ]]; then
      echo "applied, but the fix is not observed (answer: $after)" >"$w/result"
      exit 1
    fi
    load_step 2
    "$livegraft" revert "$probe_pid" fix ${LIVEGRAFT_APPLY_ARGS[@]+"${LIVEGRAFT_APPLY_ARGS[@]}"} >"$w/revert.log" 2>&1 || { echo "revert failed: $(head -n 3 "$w/revert.log" | oneline)" >"$w/result"; exit 1; }
    load_step 3
    reverted=$(ask)
    echo "after revert: $reverted" >>"$w/answers"
    if ! [[ $reverted =~ $VULNERABLE ]]; then
      echo "reverted, but the old behaviour is not back (answer: $reverted)" >"$w/result"
      exit 1
    fi
    under_load=
    if [ -n "$load_pid" ]; then
      kill -TERM $load_pid
      wait $load_pid || { echo "under load, a wrong or failed answer: $(tail -n 1 "$w/load.log" | oneline 400)" >"$w/result"; exit 1; }
      under_load=" under load ($(grep -o '[0-9]* requests' "$w/load.log"), none wrong)"
      load_pid=
    fi
    stop_probe
    # The project's own incremental rebuild of the fix, for comparison: in the vulnerable tree
    # itself (a CMake build directory names its source tree by absolute path; a copy would not do).
    cd "$w/src" && patch -p1 --batch --quiet <"$w/fix.diff" >/dev/null && touch "$w/fix-applied"
    t0=$(now)
    # Without ccache: Meson uses it on its own when installed, and the fixed unit may be cached
    # from an earlier run (cpp-httplib: 2.9 s instead of 162.6 s).
    CCACHE_DISABLE=1 incremental_build >"$w/incremental.log" 2>&1
    t1=$(now)
    elapsed "$t0" "$t1" >"$w/incremental_seconds"
    echo "patched live${under_load}; fix observed, reverted" >"$w/result"
    exit 0
  )
  status=$?
  IFS='|' read -r pkg cve bs target_kind <"$w/meta" 2>/dev/null
  result=$(cat "$w/result" 2>/dev/null || echo "failed (see $w)")
  functions=$(cat "$w/functions" 2>/dev/null)
  build_s=$(cat "$w/build_seconds" 2>/dev/null || echo -)
  incr_s=$(cat "$w/incremental_seconds" 2>/dev/null || echo -)
  if [ $status -eq 77 ]; then
    skipped=$((skipped + 1))
  else
    ran=$((ran + 1))
    [ $status -eq 0 ] && live=$((live + 1))
  fi
  rows+=("| $case | $pkg | $cve | $bs | $target_kind | ${functions:--} | $build_s s / $incr_s s | $result |")
  echo "run.sh: $case: $result" >&2
done

echo "| case | package (pinned) | CVE | build system | target | functions in the patch | livegraft build / incremental rebuild | result |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "$live of $ran cases patched live ($skipped skipped); $(uname -m), $(nproc) cores, $(gcc --version | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg)"
[ $ran -eq 0 ] && exit 77
[ $live -eq $ran ] && exit 0
exit 1
