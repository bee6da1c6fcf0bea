#!/usr/bin/python3.11
"""HTTP server and load generator for the leaktrace corpus (stdlib only).

  httpload.py serve --port P --dir D        python ThreadingHTTPServer serving the files of D
  httpload.py files --dir D [--seed S]      write 200 files of 1 KiB-2 MiB into D (for any server)
  httpload.py load --port P [--rate R] [--conc C] [--seed S]
                                            GET random /f<N> files at about R requests/s with C
                                            threads, until killed
"""
import argparse
import http.client
import http.server
import os
import random
import sys
import threading
import time


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["serve", "files", "load"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir", default=".")
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--conc", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    if a.mode == "files":
        os.makedirs(a.dir, exist_ok=True)
        for i in range(200):
            with open(os.path.join(a.dir, f"f{i}"), "wb") as f:
                f.write(rng.randbytes(int(1024 * 2 ** rng.uniform(0, 11))))
        return 0
    if a.mode == "serve":
        print(f"pid {os.getpid()}: python http.server on port {a.port} serving {a.dir}", flush=True)
        handler = lambda *x: Quiet(*x, directory=a.dir)  # noqa: E731
        http.server.ThreadingHTTPServer(("127.0.0.1", a.port), handler).serve_forever()
        return 0
    print(f"pid {os.getpid()}: HTTP load on port {a.port}: ~{a.rate:.0f} req/s, {a.conc} threads", flush=True)

    def worker(seed):
        r = random.Random(seed)
        conn = None
        while True:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
                conn.request("GET", f"/f{r.randrange(200)}")
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn = None
                time.sleep(0.5)
            time.sleep(r.expovariate(a.rate / a.conc))

    for i in range(a.conc):
        threading.Thread(target=worker, args=(a.seed * 100 + i,), daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
