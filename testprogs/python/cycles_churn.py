"""CPython churning reference cycles it drops at once: the cycle collector runs and frees them,
memory stays level. Usage: python3.11 cycles_churn.py PAIRS_PER_SEC SECS"""
import sys
import time


class Node:
    def __init__(self):
        self.other = None
        self.payload = [0] * 16


def main():
    rate, secs = int(sys.argv[1]), float(sys.argv[2])
    print("ready", flush=True)
    end = time.monotonic() + secs
    nxt = time.monotonic()
    while time.monotonic() < end:
        for _ in range(rate // 10):
            a, b = Node(), Node()
            a.other, b.other = b, a
        nxt += 0.1
        time.sleep(max(0.0, nxt - time.monotonic()))


main()
