"""Per-thread vs stop-the-world: per-thread stops and transition time on idle targets.
Run from the build directory: python3 ../bench/per_thread_stops.py [runs] (default 3 runs per
size and model; the run with the median transition time is printed; loaded machine = noisy).
Per-thread: the stops of every apply and revert of a size are also pooled ("pooled stops"): with
13 threads one transition's p99 is its longest stop, the pool of 2 x runs transitions is not."""
import subprocess, json, sys, os
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
keys = ('threads', 'max_stopped_threads', 'all_stopped_moments', 'stop_p50_us', 'stop_p99_us', 'longest_stop_us',
        'stopped_us', 'total_us', 'stop_parts_us')
print('load average', os.getloadavg())
for n in (10, 100, 1000):
    p = subprocess.Popen(['./targets/idle_threads', str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    inj = json.loads(subprocess.run([os.environ.get('LIVEGRAFT', './livegraft'), '--json', 'inject', str(p.pid)], capture_output=True, text=True).stdout)
    print(n, 'inject stops', inj.get('stops'))
    for model in ('per-thread', 'stop-the-world'):
        res, pool = [], []
        for _ in range(runs):
            r = subprocess.run([os.environ.get('LIVEGRAFT', './livegraft'), '--json', 'apply', '--model', model, str(p.pid), 'patches/compute_plus2.o'],
                               capture_output=True, text=True)
            t = json.loads(r.stdout).get('transition', {})
            res.append({k: t.get(k) for k in keys if k in t})
            pool += t.get('stops_us', [])
            r = subprocess.run([os.environ.get('LIVEGRAFT', './livegraft'), '--json', 'revert', '--model', model, str(p.pid), 'compute-plus2'],
                               capture_output=True, text=True)
            pool += json.loads(r.stdout).get('transition', {}).get('stops_us', [])
        res.sort(key=lambda t: t.get('total_us', 0))
        print(n, model, 'median of', runs, res[len(res) // 2])
        if pool:
            pool.sort()
            q = lambda f: pool[min(len(pool) - 1, int(f * len(pool)))]
            print(n, model, 'pooled stops: %d, p50 %d us, p99 %d us, max %d us' % (len(pool), q(0.5), q(0.99), pool[-1]))
    p.kill()
    p.wait()
