#!/usr/bin/python3.11
"""Python workloads for the leaktrace corpus (Debian python3.11, stdlib only).

Every mode prints its pid and what it does, takes its parameters on the command line and is
deterministic given --seed (sizes and timings of its random choices; the wall-clock pace of a
shared machine is not).

  lru      a bounded LRU cache (OrderedDict) that warms for ~--warm-secs and then holds
  tides    batch tides: build --min-mib..--max-mib of Python objects, work on them, free, repeat
  reqbuf   request-buffer server: Poisson requests each holding a buffer for a while (tides),
           optionally keeping a small part of every request forever (--leak-rate: a leak)
  leak     a leak of --rate bytes/s (optionally in mmap'd tides, starting after --start-after s,
           stopping after --stop-after s, or in chunks of --chunk-mib every --chunk-every s)

Leaked memory is written (every page touched) and kept in a list; tide buffers are anonymous
mmaps (as a server's large request buffers are), so freeing them gives the memory back.
"""
import argparse
import collections
import hashlib
import mmap
import os
import random
import sys
import time

MIB = 1 << 20
KIB = 1 << 10


def say(msg):
    print(f"pid {os.getpid()}: {msg}", flush=True)


def anon_map(n):
    """Private anonymous memory (Python's default for fileno -1 is a shared mapping: shmem)."""
    return mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)


def touched(n, fill):
    """A bytes object of n bytes whose every page was written."""
    return bytes([fill & 0xFF]) * n


class Tides:
    """Random tides: hold a buffer of random size for a random time, then free it for a while."""

    def __init__(self, rng, lo_mib, hi_mib, hold, low):
        self.rng, self.lo, self.hi, self.hold, self.low = rng, lo_mib, hi_mib, hold, low
        self.buf = None
        self.next_change = time.monotonic() + rng.uniform(*low)

    def step(self, now):
        if self.hi <= 0 or now < self.next_change:
            return
        if self.buf is None:
            size = int(self.rng.uniform(self.lo, self.hi) * MIB)
            self.buf = anon_map(size)
            chunk = touched(MIB, self.rng.randrange(256))
            for off in range(0, size, MIB):
                self.buf[off : off + min(MIB, size - off)] = chunk[: min(MIB, size - off)]
            self.next_change = now + self.rng.uniform(*self.hold)
        else:
            self.buf.close()
            self.buf = None
            self.next_change = now + self.rng.uniform(*self.low)


def poisson(rng, mean):
    """A Poisson-distributed count (Knuth; mean is small here)."""
    limit, k, p = pow(2.718281828459045, -mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def rng_pair(text):
    a, _, b = text.partition("-")
    return (float(a), float(b or a))


def run_lru(a):
    rng = random.Random(a.seed)
    cap = a.entries
    keyspace = cap * 4
    # Misses insert; with 3/4 of the keyspace missing, the cache fills in about warm_secs.
    rate = cap / a.warm_secs * 1.15
    say(
        f"python LRU cache: {cap} entries of ~{a.value_bytes} B (~{cap * a.value_bytes // MIB} MiB), "
        f"{rate:.0f} req/s over {keyspace} keys, warms ~{a.warm_secs:.0f} s then holds (seed {a.seed})"
    )
    cache = collections.OrderedDict()
    t0 = time.monotonic()
    n = 0
    while a.secs <= 0 or time.monotonic() - t0 < a.secs:
        for _ in range(int(rate / 10)):
            k = rng.randrange(keyspace)
            v = cache.get(k)
            if v is None:
                cache[k] = touched(a.value_bytes + rng.randrange(a.value_bytes // 4), k)
                if len(cache) > cap:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(k)
            n += 1
        time.sleep(0.1)


def run_tides(a):
    rng = random.Random(a.seed)
    how = {
        "objects": "Python objects (glibc keeps much of the freed heap: small tides on a plateau)",
        "mmap": "4 MiB anonymous mmap arrays (given back when freed: full tides)",
    }[a.buffers]
    say(
        f"python batch tides: {a.min_mib}-{a.max_mib} MiB per batch in {how}, work {a.work_secs} s, "
        f"idle {a.idle_secs} s (seed {a.seed})"
    )
    work, idle = rng_pair(a.work_secs), rng_pair(a.idle_secs)
    t0 = time.monotonic()
    while a.secs <= 0 or time.monotonic() - t0 < a.secs:
        target = int(rng.uniform(a.min_mib, a.max_mib) * MIB)
        batch, size = [], 0
        while size < target:
            if a.buffers == "mmap":
                n = min(4 * MIB, target - size)
                m = anon_map(n)
                m.write(touched(n, size >> 20))
                batch.append((rng.random(), m, str(n)))
            else:
                n = rng.randrange(200, 4000)
                batch.append((rng.random(), touched(n, n), str(n)))
            size += n + 120
        end = time.monotonic() + rng.uniform(*work)
        while time.monotonic() < end:
            h = hashlib.sha1()
            for rec in batch[rng.randrange(len(batch)) :][:2000]:
                h.update(rec[1][:64])
            time.sleep(0.2)
        batch.sort(key=lambda r: r[0])
        for rec in batch:
            if isinstance(rec[1], mmap.mmap):
                rec[1].close()
        del batch
        time.sleep(rng.uniform(*idle))


def run_reqbuf(a):
    rng = random.Random(a.seed)
    lo, hi = rng_pair(a.buf_kib)
    say(
        f"python request-buffer server: {a.rps} req/s, buffers {lo:.0f}-{hi:.0f} KiB held "
        f"{a.hold_secs} s, bursts; leak {a.leak_rate} B/s kept from requests (seed {a.seed})"
    )
    hold = rng_pair(a.hold_secs)
    live = []  # (release time, buffer)
    kept = []
    owed = 0.0
    t0 = last = time.monotonic()
    burst_until, next_burst = 0.0, t0 + rng.uniform(10, 40)
    while a.secs <= 0 or time.monotonic() - t0 < a.secs:
        now = time.monotonic()
        if now >= next_burst:  # bursts of 3x the traffic, 5-15 s long, every 20-60 s
            burst_until = now + rng.uniform(5, 15)
            next_burst = burst_until + rng.uniform(20, 60)
        rate = a.rps * (3 if now < burst_until else 1)
        for _ in range(poisson(rng, rate / 10)):
            size = int(rng.uniform(lo, hi) * KIB)
            buf = anon_map(size)
            buf.write(touched(size, size))
            live.append((now + rng.uniform(*hold), buf))
        # The leak: a part of the requests' data is kept, at a steady a.leak_rate bytes/s.
        owed += a.leak_rate * (now - last)
        last = now
        while owed >= 4096:
            n = min(int(owed), rng.randrange(1024, 16384))
            kept.append(touched(n, 7))
            owed -= n
        keep = []
        for r in live:
            if r[0] <= now:
                r[1].close()
            else:
                keep.append(r)
        live = keep
        time.sleep(0.1)


def run_leak(a):
    rng = random.Random(a.seed)
    tides = Tides(rng, a.tide_min_mib, a.tide_max_mib, rng_pair(a.tide_hold), rng_pair(a.tide_low))
    what = f"python leak {a.rate} B/s"
    if a.chunk_mib:
        what = f"python chunky leak {a.chunk_mib} MiB every {a.chunk_every} s"
    if a.tide_max_mib:
        what += f" in random tides of {a.tide_min_mib}-{a.tide_max_mib} MiB"
    if a.start_after:
        what += f", healthy for {a.start_after} s first"
    if a.stop_after:
        what += f", stops leaking after {a.stop_after} s (then holds)"
    say(what + f" (seed {a.seed})")
    kept = []
    t0 = time.monotonic()
    owed = 0.0
    last = t0
    chunk_lo, chunk_hi = rng_pair(a.chunk_mib) if a.chunk_mib else (0, 0)
    every = rng_pair(a.chunk_every)
    next_chunk = t0 + a.start_after + rng.uniform(*every)
    while a.secs <= 0 or time.monotonic() - t0 < a.secs:
        now = time.monotonic()
        tides.step(now)
        el = now - t0
        leaking = el >= a.start_after and (a.stop_after <= 0 or el < a.stop_after)
        if leaking and a.chunk_mib:
            if now >= next_chunk:
                kept.append(touched(int(rng.uniform(chunk_lo, chunk_hi) * MIB), len(kept)))
                next_chunk = now + rng.uniform(*every)
        elif leaking:
            owed += a.rate * (now - last)
            # Leak in small objects (a few KiB each), as a real leak does.
            while owed >= 4096:
                n = min(int(owed), rng.randrange(1024, 16384))
                kept.append(touched(n, n))
                owed -= n
        last = now
        time.sleep(0.1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["lru", "tides", "reqbuf", "leak"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--secs", type=float, default=0, help="run this long, then exit (0: until killed)")
    p.add_argument("--entries", type=int, default=40000)
    p.add_argument("--value-bytes", type=int, default=2048)
    p.add_argument("--warm-secs", type=float, default=40)
    p.add_argument("--min-mib", type=float, default=20)
    p.add_argument("--max-mib", type=float, default=60)
    p.add_argument("--buffers", choices=["objects", "mmap"], default="objects", help="tides: what a batch is made of")
    p.add_argument("--work-secs", default="3-10")
    p.add_argument("--idle-secs", default="2-8")
    p.add_argument("--rps", type=float, default=8)
    p.add_argument("--buf-kib", default="256-4096")
    p.add_argument("--hold-secs", default="0.2-2")
    p.add_argument("--leak-rate", type=float, default=0)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--tide-min-mib", type=float, default=0)
    p.add_argument("--tide-max-mib", type=float, default=0)
    p.add_argument("--tide-hold", default="2-8")
    p.add_argument("--tide-low", default="1-6")
    p.add_argument("--start-after", type=float, default=0)
    p.add_argument("--stop-after", type=float, default=0)
    p.add_argument("--chunk-mib", default="")
    p.add_argument("--chunk-every", default="20-40")
    a = p.parse_args()
    try:
        {"lru": run_lru, "tides": run_tides, "reqbuf": run_reqbuf, "leak": run_leak}[a.mode](a)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
