#!/usr/bin/env python3
"""The measurements behind the choice of unwinding design (README, "Unwinding without frame
pointers"): how much stack the unwinder needs on real programs, what a stack copy costs in the
kernel, and what unwinding costs the agent.

    measure-unwind.py LEAKTRACE WORKDIR [windows|kernel|all]

`windows`: each test program (C and C++ -O2, Rust release, node --perf-basic-prof, CPython -X perf
when one is found, redis-server under redis-benchmark) runs under `leaktrace sites --json
--stack-window 8` (the largest window) for 10 s; prints, per program, how many pages the copies
needed to reach the first frame outside the C/C++ runtime and to unwind completely, the share of
bytes left unattributed, and the agent's time per unwound copy.

`kernel`: `faultstorm` (built from testprogs/c) runs a page-fault storm while `leaktrace sites
--fault-sample 64` watches it with copies off, with the default copies (rate-limited) and with
windows of 1, 2, 4 and 8 pages and no rate limit; the BPF run time of `rss_stat` (with kernel.bpf_stats_enabled=1; the tail-called copy is
charged to it) gives the cost per fault, and the difference to copies off divided by the copies
taken gives the cost of one copy. Each arm runs ROUNDS times, interleaved.
"""
import glob, json, os, signal, statistics, subprocess, sys, time

L, W = sys.argv[1], sys.argv[2]
WHAT = sys.argv[3] if len(sys.argv) > 3 else 'all'
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
os.makedirs(W, exist_ok=True)


def build(cmd, out):
    path = os.path.join(W, out)
    if not os.path.exists(path):
        subprocess.run(cmd + ['-o', path], check=True)
    return path


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=W, **kw)
    line = p.stdout.readline()
    return p, json.loads(line)['pid']


def sites(pid, secs, *extra):
    out = subprocess.run([L, 'sites', '--json', '--pid', str(pid), '--duration', str(secs), *extra],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f'leaktrace sites failed: {out.stderr}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def pages(hist):
    n = sum(hist)
    if n == 0:
        return 'n/a'
    cum, parts = 0, []
    for i, c in enumerate(hist[:-1]):
        cum += c
        if c:
            parts.append(f'≤{i + 1}p {100 * cum / n:.0f}%')
    if hist[-1]:
        parts.append(f'>8p or incomplete {100 * hist[-1] / n:.0f}%')
    return ', '.join(parts)


def windows():
    progs = []
    progs.append(('C -O2 (service.c)', [build(['cc', '-O2', os.path.join(REPO, 'testprogs/c/service.c')], 'service'), '60']))
    progs.append(('C++ -O2 (registry.cpp)', [build(['g++', '-O2', os.path.join(REPO, 'testprogs/cpp/registry.cpp')], 'registry'), '60']))
    rust = os.path.join(W, 'rust-target/release/rust-leaker')
    if not os.path.exists(rust):
        subprocess.run(['cargo', 'build', '--release', '--quiet', '--manifest-path',
                        os.path.join(REPO, 'testprogs/rust-leaker/Cargo.toml'), '--target-dir',
                        os.path.join(W, 'rust-target')], check=True,
                       env={k: v for k, v in os.environ.items() if k not in ('RUSTFLAGS', 'CARGO_ENCODED_RUSTFLAGS')})
    progs.append(('Rust release (rust-leaker std)', [rust, '60', '2048', 'std']))
    progs.append(('node --perf-basic-prof (leaker.js)', ['node', '--perf-basic-prof', os.path.join(REPO, 'testprogs/js/leaker.js'), '60']))
    for py in sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/3.1[2-9]*/bin/python3')), reverse=True)[:1]:
        progs.append((f'CPython {py.split("/")[-3]} -X perf (leaker.py)', [py, '-X', 'perf', os.path.join(REPO, 'testprogs/py/leaker.py'), '60']))
    print('| program | copies | pages to the first own frame | pages for a complete unwind | truncated | unattributed | agent µs per copy | CFI read once: ms, MiB |')
    print('|---|---:|---|---|---:|---:|---:|---:|')
    for name, cmd in progs:
        p, pid = start(cmd)
        try:
            v = sites(pid, 10, '--stack-window', '8')
        finally:
            p.kill(); p.wait()
        for f in glob.glob(f'/tmp/perf-{pid}.map'):
            os.remove(f)
        row(name, v)
    # redis-server (jemalloc, distribution build) under redis-benchmark.
    srv = subprocess.Popen(['redis-server', '--port', '6391', '--save', '', '--appendonly', 'no'], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    bench = subprocess.Popen(['redis-benchmark', '-p', '6391', '-t', 'set,lpush', '-n', '5000000', '-r', '1000000', '-d', '256', '-q'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        v = sites(srv.pid, 10, '--stack-window', '8')
    finally:
        bench.kill(); bench.wait(); srv.kill(); srv.wait()
    row('redis-server under redis-benchmark SET/LPUSH', v)


def row(name, v):
    u = v['unwind']
    total = sum(s['bytes'] for s in v['sites']) or 1
    per = u['unwind_ns'] / 1e3 / max(1, u['copies'] + u['fp_checked'])
    print(f"| {name} | {u['copies']} | {pages(u['own_frame_pages'])} | {pages(u['full_pages'])} | {u['truncated']} | "
          f"{100 * v['unattributed_bytes'] / total:.1f} % | {per:.0f} | {u['cfi_load_ns'] / 1e6:.0f}, {u['cfi_bytes'] / 2**20:.1f} |", flush=True)


def rss_stat_stats(agent_pid):
    # The agent's own programs: the prog_id of each BPF program descriptor it holds.
    ids = set()
    for fd in glob.glob(f'/proc/{agent_pid}/fdinfo/*'):
        try:
            for line in open(fd):
                if line.startswith('prog_id:'):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    progs = json.loads(subprocess.run(['bpftool', 'prog', 'show', '-j'], capture_output=True, text=True).stdout)
    for p in progs:
        if p.get('name') == 'rss_stat' and p.get('id') in ids:
            return p.get('run_time_ns', 0), p.get('run_cnt', 0)
    return None


def kernel(rounds=3):
    storm_bin = build(['cc', '-O2', os.path.join(HERE, 'faultstorm.c')], 'faultstorm')
    subprocess.run(['sysctl', '-qw', 'kernel.bpf_stats_enabled=1'], check=True)
    arms = [('off', ['--stack-copies', '0']), ('default (50/s, 8p)', [])] + \
        [(f'{w}p', ['--stack-copies', '100000', '--stack-window', str(w)]) for w in (1, 2, 4, 8)]
    res = {a: [] for a, _ in arms}
    for r in range(rounds):
        for name, extra in (arms if r % 2 == 0 else arms[::-1]):
            storm = subprocess.Popen([storm_bin, '64', '30'], stdout=subprocess.DEVNULL)
            agent = subprocess.Popen([L, 'sites', '--json', '--pid', str(storm.pid), '--fault-sample', '64', *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for line in agent.stderr:
                if 'allocation sites of pid' in line:
                    break
            time.sleep(1)
            a = rss_stat_stats(agent.pid)
            time.sleep(6)
            b = rss_stat_stats(agent.pid)
            agent.send_signal(signal.SIGINT)
            out, _ = agent.communicate(timeout=60)
            storm.kill(); storm.wait()
            v = json.loads(out.strip().splitlines()[-1])
            if a and b and b[1] > a[1]:
                ns = (b[0] - a[0]) / (b[1] - a[1])
                res[name].append((ns, v['stack_copies'], v['fault_samples'], b[1] - a[1]))
                print(f'round {r + 1} {name}: rss_stat {ns:.0f} ns per call; {v["stack_copies"]} copies, '
                      f'{v["fault_samples"]} fault samples', file=sys.stderr, flush=True)
    base = statistics.median(x[0] for x in res['off'])
    print('| copies | rss_stat ns per fault (median) | copies per fault sample | extra ns per copy |')
    print('|---|---:|---:|---:|')
    for name, _ in arms:
        ns = statistics.median(x[0] for x in res[name])
        ratio = statistics.median(x[1] / max(1, x[2]) for x in res[name])
        per = (ns - base) * 64 / ratio if name != 'off' and ratio > 0.5 else float('nan')
        print(f'| {name} | {ns:.0f} | {ratio:.2f} | {per:.0f} |')


if WHAT in ('windows', 'all'):
    windows()
if WHAT in ('kernel', 'all'):
    kernel()
