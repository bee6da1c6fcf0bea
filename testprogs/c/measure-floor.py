#!/usr/bin/env python3
"""Cost of the interval floor in `kmem:rss_stat`, arms interleaved in random order each round.

    measure-floor.py ROUNDS WORKLOAD [ARGS...] -- NAME=[LEAKTRACE ARGS]...

e.g. measure-floor.py 15 target/release/lt-workload faults 256 10 -- off= \
        "before=/tmp/leaktrace-main run --json" \
        "nofloor=target/release/leaktrace run --json --pretend-missing rss_floor" \
        "floor=target/release/leaktrace run --json"

An arm is `off` (no agent) or a leaktrace binary and its arguments. Per run: the agent is started
and waited for (`leaktrace: running`, then 0.3 s), the workload runs, the agent is stopped. With
`kernel.bpf_stats_enabled=1` (set for the duration, then restored) the kernel counts the run time
of each BPF program: the script reads the `rss_stat` program this agent loaded (by the agent's
pid, `bpftool prog show`) before and after the workload, giving the average in-kernel run time
per `rss_stat` event — one per page fault in a fault storm — and the program's xlated size.
Also: the workload's CPU time (user+sys, wait4) and wall time, and the agent's own CPU time
(utime+stime from /proc/PID/stat) over the workload, in % of one core.

Prints one line per round and, at the end, per arm: the median and the range over the rounds,
the agent's peak RSS (VmHWM); then, for each pair of agent arms, the paired difference (median
and interquartile range of the per-round differences, which cancels slow drift of a shared
machine). The agent finds the program by the descriptors it holds (/proc/PID/fdinfo), so other
agents on the machine do not mix in.
"""
import json, os, random, signal, statistics, subprocess, sys, time

ROUNDS = int(sys.argv[1])
sep = sys.argv.index('--')
WORK = sys.argv[2:sep]
ARMS = []
for spec in sys.argv[sep + 1:]:
    name, rest = spec.split('=', 1)
    ARMS.append((name, rest.split() if rest else []))
TICK = os.sysconf('SC_CLK_TCK')


def prog_ids(pid):
    """Ids of the BPF programs whose descriptors process `pid` holds (/proc/PID/fdinfo)."""
    ids = set()
    for fd in os.listdir(f'/proc/{pid}/fdinfo'):
        try:
            for line in open(f'/proc/{pid}/fdinfo/{fd}'):
                if line.startswith('prog_id:'):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def rss_stat_of(pid):
    """(run_time_ns, run_cnt, bytes_xlated) of the rss_stat program held by process `pid`."""
    out = subprocess.run(['bpftool', 'prog', 'show', '--json'], capture_output=True, text=True, check=True)
    ids = prog_ids(pid)
    for p in json.loads(out.stdout):
        if p.get('name', '').startswith('rss_stat') and p['id'] in ids:
            return p.get('run_time_ns', 0), p.get('run_cnt', 0), p.get('bytes_xlated', 0)
    raise SystemExit(f'no rss_stat program held by pid {pid}')


def cpu_ticks(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12])


def one(args):
    agent = None
    try:
        if args:
            agent = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for line in agent.stderr:
                if 'leaktrace: running' in line:
                    break
            else:
                raise SystemExit(f'agent {args} did not start')
            time.sleep(0.3)
            rt0, rc0, xl = rss_stat_of(agent.pid)
            a0 = cpu_ticks(agent.pid)
        t0 = time.monotonic()
        child = subprocess.Popen(WORK, stdout=subprocess.DEVNULL)
        _, st, ru = os.wait4(child.pid, 0)
        wall = time.monotonic() - t0
        r = {'cpu': ru.ru_utime + ru.ru_stime, 'wall': wall}
        if agent:
            rt1, rc1, _ = rss_stat_of(agent.pid)
            a1 = cpu_ticks(agent.pid)
            r['events'] = rc1 - rc0
            r['ns_per_event'] = (rt1 - rt0) / max(1, rc1 - rc0)
            r['agent_cpu_pct'] = 100.0 * (a1 - a0) / TICK / wall
            r['xlated'] = xl
            r['hwm_mib'] = next(int(l.split()[1]) for l in open(f'/proc/{agent.pid}/status') if l.startswith('VmHWM:')) / 1024
        return r
    finally:
        if agent:
            agent.send_signal(signal.SIGINT)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()


def main():
    old = open('/proc/sys/kernel/bpf_stats_enabled').read().strip()
    open('/proc/sys/kernel/bpf_stats_enabled', 'w').write('1')
    res = {n: [] for n, _ in ARMS}
    try:
        one([])  # warm-up
        for rnd in range(ROUNDS):
            order = list(ARMS)
            random.shuffle(order)
            for name, args in order:
                res[name].append(one(args))
            print(f'round {rnd + 1}: ' + ', '.join(
                f"{n} cpu {res[n][-1]['cpu']:.3f}s" + (f" {res[n][-1]['ns_per_event']:.1f} ns/ev" if 'ns_per_event' in res[n][-1] else '')
                for n, _ in ARMS), file=sys.stderr, flush=True)
    finally:
        open('/proc/sys/kernel/bpf_stats_enabled', 'w').write(old)

    def med(xs):
        return statistics.median(xs)
    agents = [n for n, a in ARMS if a]
    base_cpu = med([r['cpu'] for r in res[ARMS[0][0]]])
    print(f'{ROUNDS} rounds of {" ".join(WORK)}; medians [min–max]')
    for name, args in ARMS:
        rs = res[name]
        cpu = [r['cpu'] for r in rs]
        line = f'{name:>10}: workload CPU {med(cpu):.3f} s [{min(cpu):.3f}–{max(cpu):.3f}] ({100 * (med(cpu) / base_cpu - 1):+.1f} % vs {ARMS[0][0]})'
        if args:
            ns = [r['ns_per_event'] for r in rs]
            ac = [r['agent_cpu_pct'] for r in rs]
            line += (f'; rss_stat {med(ns):.1f} ns/event [{min(ns):.1f}–{max(ns):.1f}], {med([r["events"] for r in rs]):.0f} events,'
                     f' {rs[0]["xlated"]} B xlated; agent CPU {med(ac):.2f} % [{min(ac):.2f}–{max(ac):.2f}],'
                     f' peak RSS {max(r["hwm_mib"] for r in rs):.1f} MiB')
        print(line)
    for i, name in enumerate(agents):
        for ref in agents[:i]:
            d = [r['ns_per_event'] - q['ns_per_event'] for r, q in zip(res[name], res[ref])]
            a = [r['agent_cpu_pct'] - q['agent_cpu_pct'] for r, q in zip(res[name], res[ref])]
            c = [100 * (r['cpu'] / q['cpu'] - 1) for r, q in zip(res[name], res[ref])]
            q1, q3 = statistics.quantiles(d, n=4)[0], statistics.quantiles(d, n=4)[2]
            print(f'{name:>10} vs {ref}, paired per round: rss_stat {med(d):+.1f} ns/event (IQR {q1:+.1f}…{q3:+.1f}),'
                  f' workload CPU {med(c):+.1f} %, agent CPU {med(a):+.2f} points')


main()
