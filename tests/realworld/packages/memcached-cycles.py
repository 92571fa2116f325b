#!/usr/bin/env python3
"""Usage: VULNERABLE=RE FIXED=RE [MEMCACHED_ARGS=...] [MEMCACHED_ENV='K=V ...'] \\
    memcached-cycles.py CASE_DIR N text|sasl ARGS...

N apply/revert cycles of CASE_DIR/fix.o (a memcached case's work directory, build/realworld/NAME,
after a run: its tree must hold the vulnerable build again, `patch -R -p1 <fix.diff && make -j2
memcached` in src/) on a memcached started here as the case starts it, while 8 connections send the
request ARGS (as memcached-client.py) again and again. Every answer is judged by the phase it was
sent and answered in (applying, applied, reverting, reverted; one sent in one phase and answered
in the next is not judged): a vulnerable answer once applied or a fixed one once reverted is
wrong. Prints the counts, the wrong answers, each transition's summary line; exit 1 if any answer
was wrong, a request failed, an apply or revert failed or the server died. BUILD_DIR: livegraft's
build (default build/ of the repository)."""
import importlib.util, os, re, subprocess, sys, threading, time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))
spec = importlib.util.spec_from_file_location("mc", os.path.join(here, "memcached-client.py"))
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)

case, n, mode, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
vulnerable, fixed = re.compile(os.environ["VULNERABLE"]), re.compile(os.environ["FIXED"])
port = open(os.path.join(case, "run", "port")).read().strip()
env = dict(os.environ)
for kv in os.environ.get("MEMCACHED_ENV", "").split():
    k, v = kv.split("=", 1)
    env[k] = v
build = os.environ.get("BUILD_DIR", os.path.join(root, "build"))
livegraft, agent = os.path.join(build, "livegraft"), os.path.join(build, "liblivegraft-agent.so")
server = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", os.path.join(case, "src", "memcached"),
                           "-l", "127.0.0.1", "-p", port, "-U", "0", "-t", "4", "-m", "64"]
                          + os.environ.get("MEMCACHED_ARGS", "").split(), env=env, stderr=subprocess.DEVNULL)
phase = [("start", 0)]  # (name, generation): one tuple, replaced at once
stop, lock = threading.Event(), threading.Lock()
counts, wrong, failed = {}, [], [0]


def load():
    c = mc.client([mode, port] + args)
    while not stop.is_set():
        sent = phase[0]
        try:
            a = c.ask(time.time() + 30)
        except (OSError, EOFError) as e:
            with lock:
                failed[0] += 1
                wrong.append((sent[0], str(e)))
            c = mc.client([mode, port] + args)
            continue
        kind = "vulnerable" if vulnerable.search(a) else "fixed" if fixed.search(a) else "neither"
        with lock:
            if phase[0] != sent:
                kind = "into the next phase"
            elif kind == "neither" or (sent[0] == "applied" and kind == "vulnerable") or (sent[0] == "reverted" and kind == "fixed"):
                wrong.append((sent[0], a[:100]))
            counts[(sent[0], kind)] = counts.get((sent[0], kind), 0) + 1


threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
for t in threads:
    t.start()
time.sleep(1.5)
lines, ok, t0, gen = [], True, time.time(), 0


def step(name):
    global gen
    gen += 1
    phase[0] = (name, gen)


for i in range(n):
    for verb, cmd, done in (("apply", [livegraft, "apply", str(server.pid), os.path.join(case, "fix.o"), "--agent", agent], "applied"),
                            ("revert", [livegraft, "revert", str(server.pid), "fix"], "reverted")):
        step(verb + "ing" if verb == "apply" else "reverting")
        r = subprocess.run(cmd + ["--allow-stack-switching"], capture_output=True, text=True)
        if r.returncode:
            print("%s %d failed: %s %s" % (verb, i, r.stdout, r.stderr))
            ok = False
            break
        step(done)
        lines.append(verb + ": " + " ".join(l.strip() for l in r.stdout.splitlines() if "switched" in l))
        time.sleep(0.3)
    if not ok:
        break
stop.set()
for t in threads:
    t.join(15)
alive = server.poll() is None
server.kill()
server.wait()
print("%d cycles in %.1f s; server alive: %s; %d requests failed" % (len(lines) // 2, time.time() - t0, alive, failed[0]))
for (p, k), c in sorted(counts.items()):
    print("  sent %s: %d %s" % (p, c, k))
print("wrong: %d %s" % (len(wrong), wrong[:5]))
for l in lines:
    print(l)
sys.exit(0 if ok and alive and not wrong else 1)
