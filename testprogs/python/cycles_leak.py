"""CPython leaking through reference cycles that stay reachable (a list nobody clears): the cycle
collector runs and finds nothing to free. Usage: python3.11 cycles_leak.py PAIRS_PER_SEC SECS"""
import sys
import time


class Node:
    def __init__(self):
        self.other = None
        self.payload = [0] * 16


def main():
    rate, secs = int(sys.argv[1]), float(sys.argv[2])
    kept = []
    print("ready", flush=True)
    end = time.monotonic() + secs
    nxt = time.monotonic()
    while time.monotonic() < end:
        for _ in range(rate // 10):
            a, b = Node(), Node()
            a.other, b.other = b, a
            kept.append(a)
        nxt += 0.1
        time.sleep(max(0.0, nxt - time.monotonic()))


main()
