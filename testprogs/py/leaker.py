"""leaker.py: a Python program whose memory behaviour is known, for the interpreter-frame check
of `leaktrace sites` (CPython >= 3.12 with `-X perf`, which writes /tmp/perf-PID.map).

    python3 -X perf leaker.py SECONDS [KIB_PER_SEC]

Every 10 ms `remember_request` keeps a new bytearray of KIB_PER_SEC/100 KiB (default 2048 KiB/s)
in a list that is never pruned; `handle_request` builds and drops short strings. Prints
{"pid":N,"ready":true} once its steady state begins, then runs SECONDS and exits 0.
"""
import json
import os
import sys
import time

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
kib = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
chunk = max(1, kib * 1024 // 100)
remembered = []


def remember_request(i):
    remembered.append(bytearray(b"r") * chunk)


def handle_request(i):
    return len(",".join(f"request-{i}-{k}" for k in range(16)))


for i in range(64):
    handle_request(i)
print(json.dumps({"pid": os.getpid(), "ready": True}), flush=True)
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    for _ in range(8):
        handle_request(i)
        i += 1
    remember_request(i)
    i += 1
    time.sleep(0.01)
