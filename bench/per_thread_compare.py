"""Two livegraft builds on the same idle targets, interleaved (one target per build, whose agent it
injected): apply+revert cycles of compute_plus2, medians. Run from a build directory:
  python3 ../bench/per_thread_compare.py THREADS OLD/livegraft ./livegraft   (ROUNDS=5 by default)
Each binary needs its agent beside it (liblivegraft-agent.so) and uses the compute_plus2 patch of its own
build (patches/compute_plus2.o beside it: the patch layout changed in session 5). The machine is noisy: compare
only numbers from one run."""
import subprocess, json, sys, os, statistics
n=int(sys.argv[1]); bins=sys.argv[2:]; rounds=int(os.environ.get('ROUNDS','5'))
procs={}
for b in bins:
  p = subprocess.Popen(['./targets/idle_threads', str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True); p.stdout.readline()
  subprocess.run([b, 'inject', str(p.pid)], capture_output=True); procs[b]=p
res={b:[] for b in bins}
for _ in range(rounds):
  for b in bins:
    p=procs[b]
    r = subprocess.run([b, '--json', 'apply', '--model', 'per-thread', str(p.pid), os.path.join(os.path.dirname(os.path.abspath(b)), 'patches/compute_plus2.o')], capture_output=True, text=True)
    j=json.loads(r.stdout); t=j.get('transition') or sys.exit(r.stdout)
    r2 = subprocess.run([b, '--json', 'revert', '--model', 'per-thread', str(p.pid), 'compute-plus2'], capture_output=True, text=True)
    t2 = json.loads(r2.stdout)['transition']
    res[b].append((t['total_us'], t['thread_stops'], t['stop_p50_us'], t['stop_p99_us'], t['longest_stop_us'], t2['total_us'], t2['stop_p99_us']))
print('load', os.getloadavg(), 'threads', n)
for b,v in res.items():
  print(b, 'apply total_us/stops/p50/p99/longest, revert total_us/p99 (medians of %d):' % rounds, [statistics.median(x[i] for x in v) for i in range(7)])
for p in procs.values(): p.kill()
