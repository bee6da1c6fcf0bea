#!/usr/bin/env python3
"""Cost of leaktrace modes on a page-fault storm, finely interleaved.

    measure-sites.py LEAKTRACE FAULTSTORM SECONDS_PER_PHASE PAIRS ARM_A ARM_B

One `faultstorm 64 <long>` runs throughout (printing each round's CPU time); the agent is switched
between ARM_A and ARM_B every phase (an ARM is `off` or leaktrace arguments with PID for the storm's
pid, e.g. "run --json --stacks" or "sites --pid PID"). Rounds that ended while an arm was fully
attached count for it. Prints the median CPU ns per fault of each arm and B's overhead over A,
overall and as the median of per-pair ratios (which cancels slow drift on a shared machine).
"""
import os, signal, statistics, subprocess, sys, time

L, STORM, PHASE, PAIRS = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ARMS = sys.argv[5:7]
MARK = {'run': 'leaktrace: running', 'sites': 'allocation sites of pid', 'watch': 'leaktrace: watching'}
total = PAIRS * 2 * (PHASE + 10) + 10
storm = subprocess.Popen([STORM, '64', str(total)], stdout=subprocess.PIPE, text=True)
time.sleep(1)
windows = []  # (arm index, pair, t0_ns, t1_ns)

def phase(i, pair):
    arm = ARMS[i]
    agent = None
    if arm != 'off':
        args = [a.replace('PID', str(storm.pid)) for a in arm.split()]
        agent = subprocess.Popen([L] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in agent.stderr:
            if MARK[args[0]] in line:
                break
        # keep draining stderr so the agent never blocks on it
        import threading
        threading.Thread(target=lambda: [None for _ in agent.stderr], daemon=True).start()
    time.sleep(0.5)
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    time.sleep(PHASE)
    t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    windows.append((i, pair, t0, t1))
    if agent:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=30)

for pair in range(PAIRS):
    order = [0, 1] if pair % 2 == 0 else [1, 0]
    for i in order:
        phase(i, pair)
storm.send_signal(signal.SIGTERM)
out = storm.communicate()[0]
rounds = []
prev = None
for line in out.split('\n'):
    f = line.split()
    if len(f) != 3:
        continue  # the line cut by SIGTERM
    end, cpu, pages = map(int, f)
    if prev is not None:
        rounds.append((prev, end, cpu / pages))
    prev = end
per = {0: [], 1: []}
per_pair = {}
for i, pair, t0, t1 in windows:
    xs = [c for s, e, c in rounds if s >= t0 and e <= t1]
    per[i] += xs
    per_pair.setdefault(pair, {})[i] = statistics.median(xs) if xs else None
a, b = statistics.median(per[0]), statistics.median(per[1])
ratios = [p[1] / p[0] for p in per_pair.values() if p.get(0) and p.get(1)]
print(f'A={ARMS[0]!r}: {a:.0f} ns/fault over {len(per[0])} rounds')
print(f'B={ARMS[1]!r}: {b:.0f} ns/fault over {len(per[1])} rounds')
print(f'B vs A: {100 * (b / a - 1):+.2f} % (pooled medians), {100 * (statistics.median(ratios) - 1):+.2f} % (median of {len(ratios)} pair ratios)')
