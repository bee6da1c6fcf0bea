#!/usr/bin/python3.11
"""Load generator for redis or memcached (stdlib sockets), random keys and values.

  kvload.py redis|memcached --port P [--rate OPS] [--keys N] [--value-bytes A-B] [--seed S]

Sends --rate operations per second (90 % sets, 10 % gets, pipelined in batches every 0.1 s) over
--keys random keys with values of A-B bytes, until killed. Deterministic given --seed.
"""
import argparse
import os
import random
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["redis", "memcached"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--keys", type=int, default=500000)
    p.add_argument("--value-bytes", default="200-2000")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    lo, _, hi = a.value_bytes.partition("-")
    lo, hi = int(lo), int(hi or lo)
    rng = random.Random(a.seed)
    print(f"pid {os.getpid()}: {a.kind} load on port {a.port}: {a.rate} ops/s over {a.keys} keys, "
          f"values {lo}-{hi} B (seed {a.seed})", flush=True)
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", a.port))
            break
        except OSError:
            time.sleep(0.1)
    else:
        print("cannot connect", file=sys.stderr)
        return 1
    s.settimeout(10)
    f = s.makefile("rb")
    blob = bytes(rng.randrange(256) for _ in range(4096)) * ((hi // 4096) + 2)
    while True:
        out, replies = [], 0
        for _ in range(a.rate // 10):
            key = b"key:%d" % rng.randrange(a.keys)
            if rng.random() < 0.9:
                off = rng.randrange(4096)
                v = blob[off : off + rng.randint(lo, hi)]
                if a.kind == "redis":
                    out.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(v), v))
                else:
                    out.append(b"set %s 0 0 %d noreply\r\n%s\r\n" % (key, len(v), v))
                    continue
            elif a.kind == "redis":
                out.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
            else:
                out.append(b"get %s\r\n" % key)
            replies += 1
        s.sendall(b"".join(out))
        for _ in range(replies if a.kind == "redis" else 0):
            line = f.readline()
            if line.startswith(b"$") and line[1:2] != b"-":
                f.read(int(line[1:]) + 2)
        if a.kind == "memcached":
            # Gets end with END; sets were noreply.
            left = replies
            while left:
                line = f.readline()
                if not line:
                    return 1
                if line.startswith(b"VALUE"):
                    f.read(int(line.split()[3]) + 2)
                elif line.startswith(b"END"):
                    left -= 1
            # Sets in redis were answered (+OK) and read above.
        time.sleep(0.1)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
