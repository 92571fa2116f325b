#!/usr/bin/env python3
"""Usage: bench/realworld_build_time.py CASE [N]   (N interleaved rounds, default 3)

`livegraft build` time against the project's own incremental rebuild of the fix, for one case of
the real-world corpus (tests/realworld/cases/CASE), measured fairly on a loaded machine: N rounds,
each one after the other on the same tree,

  1. `livegraft build` as tests/realworld/run.sh runs it, with an empty cache of original objects
     (XDG_CACHE_HOME a fresh directory: both compiles, the first build a user makes);
  2. the same build again with that cache (the second build of a user iterating on a fix: the
     original from the cache, one compile);
  3. the fix applied and the project's incremental rebuild timed as run.sh times it
     (CCACHE_DISABLE=1, the case's incremental_build);
  4. the tree put back as it was before 3 (a copy made with cp -a, timestamps kept: the vulnerable
     build again for the next round, without a rebuild).

Both sides run without ccache, under the same nice level (run the bench under `nice`). Prints
each run (wall, CPU = user+sys of the command and its children, load average), the medians, the
ratio of the medians and issue 7's target (livegraft build <= 2 x rebuild + 1 s). The vulnerable
tree is the one run.sh built: build/realworld/CASE/src (run `tests/realworld/run.sh CASE`
first; run.sh leaves the fix applied and built: the bench reverses it first).

Environment: BUILD_DIR (livegraft's build, default build), WORK (default BUILD_DIR/realworld),
BENCH_WARM=0 to skip the second build. The table also goes to WORK/CASE/bench-build-time.md.
"""
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print("realworld_build_time: " + msg, file=sys.stderr)
    sys.exit(1)


def load():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def timed(cmd, log, env=None, cwd=None):
    """Runs cmd (argv), output to log; returns (exit code, wall s, cpu s, load at start)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    l0 = load()
    t0 = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, wall, cpu, l0


def case_shell(case, w, body):
    """A bash script that has the case's variables and functions as run.sh gives them."""
    return (f'set -u; export REALWORLD={ROOT}/tests/realworld; w={w}; '
            'eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"; '
            f'. {ROOT}/tests/realworld/cases/{case}/case.sh; ' + body)


def main():
    if len(sys.argv) < 2:
        die(__doc__.split("\n")[0])
    case = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    build = os.path.abspath(os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")))
    livegraft = os.path.join(build, "livegraft")
    w = os.path.join(os.path.abspath(os.environ.get("WORK", os.path.join(build, "realworld"))), case)
    src = os.path.join(w, "src")
    fix = os.path.join(w, "fix.diff")
    warm = os.environ.get("BENCH_WARM", "1") != "0"
    if not os.access(livegraft, os.X_OK):
        die(f"no {livegraft}: build livegraft first")
    if not os.path.isdir(src) or not os.path.isfile(fix):
        die(f"no built tree in {w}: run tests/realworld/run.sh {case} first")

    # The case's target and build arguments, as run.sh uses them.
    out = subprocess.run(["bash", "-c", case_shell(case, w, 'printf "%s\\0" "$TARGET" "${PROBE_CMD[0]:-}" '
                                                            '"${LIVEGRAFT_BUILD_ARGS[@]}"')],
                         capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    target, probe0, build_args = out[0], out[1], out[2:]
    if target == "exe":  # the program itself is the probe
        target = probe0
    if not target.startswith("/"):
        target = os.path.join(src, target)
    bench = os.path.join(w, "bench")
    shutil.rmtree(bench, ignore_errors=True)
    os.makedirs(bench)
    env = dict(os.environ, CCACHE_DISABLE="1")
    incremental = ["bash", "-c", case_shell(case, w, f"cd {src} && incremental_build")]

    def patch(reverse, dry=False):
        cmd = ["patch", "-p1", "--batch", "--quiet", "-f"] + (["-R"] if reverse else []) + (["--dry-run"] if dry else [])
        with open(fix) as f:
            return subprocess.run(cmd, stdin=f, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    # run.sh leaves the fix applied and built: back to the vulnerable build first.
    if patch(reverse=True, dry=True):
        print(f"{case}: the tree has the fix (run.sh's incremental rebuild): reversing it and rebuilding", flush=True)
        patch(reverse=True)
        rc, wall, _, _ = timed(incremental, os.path.join(bench, "restore-0.log"), env)
        if rc != 0:
            die(f"rebuilding the vulnerable tree failed (see {bench}/restore-0.log)")
    if not os.path.exists(target):
        die(f"the target {target} is not built")

    rows = {"cold": [], "warm": [], "incr": []}
    compile_s = {"cold": [], "warm": []}
    notes = {"cold": [], "warm": []}

    def lg_build(label, i, cache):
        e = dict(env, XDG_CACHE_HOME=cache)
        log = os.path.join(bench, f"{label}-{i}.log")
        cmd = [livegraft, "build", "--source", src, "--diff", fix, "--target", target,
               "-o", os.path.join(bench, f"fix-{label}-{i}.o")] + build_args
        rc, wall, cpu, l0 = timed(cmd, log, e)
        if rc != 0:
            die(f"livegraft build failed (see {log})")
        text = open(log).read()
        times = re.findall(r"times: (.*)", text)
        comp = sum(float(s) for s in re.findall(r"compile [^,;]*? ([0-9.]+) s", times[-1])) if times else float("nan")
        note = ", ".join(sorted(set(re.findall(r"\[(original[^\]]*)\]", times[-1] if times else ""))))
        rows[label].append((wall, cpu, l0))
        compile_s[label].append(comp)
        notes[label].append(note)
        print(f"  round {i} livegraft build ({'second, cache warm' if label == 'warm' else 'first, cache empty'}): "
              f"{wall:6.1f} s wall, {cpu:6.1f} s cpu, compile step {comp:.1f} s [{note or '-'}], load {l0:.1f}", flush=True)

    print(f"{case}: {n} rounds; {os.cpu_count()} cores, load {load():.1f}", flush=True)
    for i in range(1, n + 1):
        cache = tempfile.mkdtemp(prefix="cache-", dir=bench)
        lg_build("cold", i, cache)
        if warm:
            lg_build("warm", i, cache)
        shutil.rmtree(cache, ignore_errors=True)
        snapshot = os.path.join(bench, "src.vulnerable")
        shutil.rmtree(snapshot, ignore_errors=True)
        subprocess.run(["cp", "-a", src, snapshot], check=True)
        if not patch(reverse=False):
            die("the fix does not apply to the tree")
        rc, wall, cpu, l0 = timed(incremental, os.path.join(bench, f"incremental-{i}.log"), env)
        if rc != 0:
            die(f"the incremental rebuild failed (see {bench}/incremental-{i}.log)")
        rows["incr"].append((wall, cpu, l0))
        print(f"  round {i} incremental rebuild: {wall:6.1f} s wall, {cpu:6.1f} s cpu, load {l0:.1f}", flush=True)
        shutil.rmtree(src)
        os.rename(snapshot, src)

    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items() if v}
    loads = [r[2] for v in rows.values() for r in v]
    iw, ic = med["incr"]
    lines = [f"| {case} | median of {n} | wall s | cpu s | wall / rebuild | target 2 x rebuild + 1 s |",
             "|---|---|---|---|---|---|"]
    for k, name in (("cold", "livegraft build, first (cache empty)"), ("warm", "livegraft build, second (cache warm)")):
        if k in med:
            bw, bc = med[k]
            lines.append(f"| | {name} | {bw:.1f} | {bc:.1f} | {bw / iw:.2f} x | "
                         f"{'met' if bw <= 2 * iw + 1 else 'missed'} ({2 * iw + 1:.1f} s) |")
    lines.append(f"| | incremental rebuild (CCACHE_DISABLE=1) | {iw:.1f} | {ic:.1f} | 1 | |")
    lines.append("")
    lines.append(f"load {min(loads):.1f}-{max(loads):.1f} during the runs; compile step median "
                 + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in compile_s.items() if v)
                 + "; where the originals came from: "
                 + "; ".join(f"{k}: {', '.join(sorted(set(v)))}" for k, v in notes.items() if v))
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(w, "bench-build-time.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
