"""Per-thread vs stop-the-world: longest per-thread stop and transition time on idle targets.
Run from the build directory: python3 ../bench/per_thread_stops.py (one run, loaded machine = noisy)."""
import subprocess, json, sys
for n in (10, 100, 1000):
    p = subprocess.Popen(['./targets/idle_threads', str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    subprocess.run(['./livegraft','inject',str(p.pid)], capture_output=True)
    out = []
    for model in ('per-thread', 'stop-the-world'):
        r = subprocess.run(['./livegraft','--json','apply','--model',model,str(p.pid),'patches/compute_plus2.o'], capture_output=True, text=True)
        j = json.loads(r.stdout)
        t = j.get('transition', j)
        out.append((model, {k: t.get(k) for k in ('threads','max_stopped_threads','stop_p50_us','stop_p99_us','longest_stop_us','stopped_us','total_us')}))
        subprocess.run(['./livegraft','revert','--model',model,str(p.pid),'compute-plus2'], capture_output=True)
    print(n, out)
    p.kill()
