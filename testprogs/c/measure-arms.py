#!/usr/bin/env python3
"""A workload's CPU time (user+sys, from wait4) under leaktrace arms, interleaved in random order
each round; prints the median per arm and its overhead over the first arm.

    measure-arms.py LEAKTRACE ROUNDS WORKLOAD [ARGS...] -- NAME=[LEAKTRACE ARGS]...

e.g. measure-arms.py target/debug/leaktrace 11 target/release/lt-workload faults 256 8 -- \
        off= "run=run --json" "stacks=run --json --stacks" "sites=sites --pid PID"

The workload starts blocked (`sh -c 'read x; exec WORKLOAD'`), the agent is started on it (PID is
replaced by its pid) and waited for, then the workload is released: it is observed from its start.
"""
import os, sys, time, subprocess, signal, statistics, random, json

L = sys.argv[1]
ROUNDS = int(sys.argv[2])
sep = sys.argv.index('--')
WORK = sys.argv[3:sep]
ARMS = []
for spec in sys.argv[sep+1:]:
    name, rest = spec.split('=', 1)
    ARMS.append((name, rest.split() if rest else []))

MARK = {'run': 'leaktrace: running', 'sites': 'allocation sites of pid', 'watch': 'leaktrace: watching'}

def one(args):
    r, w = os.pipe()
    child = subprocess.Popen(['sh', '-c', 'read x; exec "$@"', 'sh'] + WORK, stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    agent = None
    if args:
        a = [x.replace('PID', str(child.pid)) for x in args]
        agent = subprocess.Popen([L] + a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        marker = MARK[a[0]]
        for line in agent.stderr:
            if marker in line:
                break
        else:
            raise SystemExit(f'agent {a} did not start')
        time.sleep(0.3)
    t0 = time.monotonic()
    os.write(w, b'go\n'); os.close(w)
    _, st, ru = os.wait4(child.pid, 0)
    wall = time.monotonic() - t0
    if agent:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
    return ru.ru_utime + ru.ru_stime, wall

res = {n: [] for n, _ in ARMS}
for rnd in range(ROUNDS):
    order = list(ARMS)
    random.shuffle(order)
    for name, args in order:
        cpu, wall = one(args)
        res[name].append((cpu, wall))
    print(f'round {rnd+1}: ' + ', '.join(f'{n} {res[n][-1][0]:.3f}s' for n, _ in ARMS), file=sys.stderr, flush=True)
base = statistics.median(c for c, _ in res[ARMS[0][0]])
out = {}
for name, _ in ARMS:
    cpu = statistics.median(c for c, _ in res[name]); wall = statistics.median(w for _, w in res[name])
    out[name] = {'cpu_median_s': round(cpu, 3), 'wall_median_s': round(wall, 3), 'cpu_overhead_pct': round(100 * (cpu / base - 1), 2), 'n': len(res[name])}
print(json.dumps(out, indent=1))
