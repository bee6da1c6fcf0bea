#!/usr/bin/python3.11
"""Summarise a record: every life that lived >= --min-secs, its footprint and floor growth.

  inspect.py FILE.jsonl[.gz] [--min-secs 60] [--all]
  inspect.py --readme FILE...     the table of corpus/README.md: one row per record
  inspect.py --analyze FILE...    `leaktrace analyze --json` on each record ($LEAKTRACE, else
                                  target/debug/leaktrace): its score, as markdown tables

Prints labelled lives first, then unlabelled ones whose floor grew by more than 2 MiB (the ones
to check by hand before keeping a record: is a background process really leaking?); --all
prints every unlabelled life.
"""
import argparse
import gzip
import json
import os
import sys

MIB = 1 << 20


def readme(files):
    print("| record | scenario, duration | lives kept | labelled processes (pid: label, what) | size |")
    print("|---|---|---|---|---|")
    for path in files:
        header, labels, lives, last_t = None, [], set(), 0
        with gzip.open(path, "rt") as f:
            for line in f:
                r = json.loads(line)
                if header is None:
                    header = r
                elif "label" in r:
                    labels.append(r["label"])
                else:
                    last_t = r["t"]
                    lives.update((n["pid"], n["start"]) for n in r.get("new", []))
        scen = header["note"].split(",")[0].replace("scenario ", "")
        cells = []
        for lab in labels:
            tag = f"**leak {lab['rate'] // 1024} KiB/s, ≤{lab['flag_within']} s**" if lab["leak"] else "no leak"
            if lab.get("leak_starts"):
                tag += f" (from {lab['leak_starts']:.0f} s)"
            cells.append(f"{lab['pid']}: {tag}, {lab['what']}")
        name = path.rsplit("/", 1)[-1]
        print(f"| {name} | {scen}, {last_t / 60:.1f} min | {len(lives)} | {'<br>'.join(cells)} | "
              f"{os.path.getsize(path) // 1024} KiB |")


def analyze(files):
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    exe = os.environ.get("LEAKTRACE") or os.path.join(here, "../../target/debug/leaktrace")
    rows, sums = [], []
    for path in files:
        name = os.path.basename(path).replace(".jsonl.gz", "")
        out = subprocess.run([exe, "analyze", "--json", path], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            e = json.loads(line)
            if e.get("event") == "score":
                sums.append((name, e))
            elif e.get("event") == "scored" and (e["what"] or e["alarms"]):
                rows.append((name, e))
    print("| record | lives | leaks | in time | late | missed | false-alarm lives | false alarms | re-alarms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, e in sums:
        print(f"| {name} | {e['lives']} | {e['leaks']} | {e['leaks_flagged_in_time']} | {e['leaks_late']} | "
              f"{e['leaks_missed']} | {e['false_alarm_lives']} | {e['false_alarms']} | {e['re_alarms']} |")
    print()
    print("| record | pid | comm | label | outcome | first flag (s) | within | alarms | re-alarms | oom_predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, e in sorted(rows, key=lambda r: (r[1]["outcome"] == "ok", r[0])):
        if not e["what"]:
            e["what"] = "(unlabelled) " + " ".join(e.get("cmdline") or [])
        fs = "-" if e["flag_secs"] is None else f"{e['flag_secs']:.0f}"
        fw = "-" if e["flag_within"] is None else f"{e['flag_within']:.0f}"
        print(f"| {name} | {e['pid']} | {e['comm']} | {e['what'][:70]} | {e['outcome']} | {fs} | {fw} | "
              f"{e['alarms']} | {e['re_alarms']} | {e['oom_predictions']} |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--readme":
        return readme(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--analyze":
        return analyze(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--min-secs", type=float, default=60)
    p.add_argument("--all", action="store_true")
    a = p.parse_args()
    op = gzip.open if a.file.endswith(".gz") else open
    ident, series, labels, header = {}, {}, {}, None
    with op(a.file, "rt") as f:
        for line in f:
            r = json.loads(line)
            if header is None:
                header = r
                continue
            if "label" in r:
                lab = r["label"]
                labels[(lab["pid"], lab["start"])] = lab
                continue
            t = r["t"]
            for n in r.get("new", []):
                ident[(n["pid"], n["start"])] = n
            for o in r.get("obs", []):
                fp = o[2] + o[4] + o[5]
                series.setdefault((o[0], o[1]), []).append((t, fp, o[6] if o[6] is not None else fp))
    print(header["note"])
    rows = []
    for k, s in series.items():
        dur = s[-1][0] - s[0][0]
        if dur < a.min_secs and k not in labels:
            continue
        w = max(10.0, dur / 10)
        f0 = min(x[2] for x in s if x[0] < s[0][0] + w)
        f1 = min(x[2] for x in s if x[0] >= s[-1][0] - w)
        mx = max(x[1] for x in s)
        lab = labels.get(k)
        comm = ident.get(k, {}).get("comm", "?")
        rows.append((lab is not None, k, comm, dur, s[0][1], s[-1][1], mx, f0, f1, lab))
    rows.sort(key=lambda r: (not r[0], r[1]))
    for has, k, comm, dur, a0, a1, mx, f0, f1, lab in rows:
        grew = f1 - f0
        if not has and not a.all and grew < 2 * MIB:
            continue
        tag = ("LEAK " if lab["leak"] else "ok   ") + lab["what"] if lab else "unlabelled " + " ".join(
            ident.get(k, {}).get("cmdline", [])[:6])[:90]
        print(f"{k[0]:>7} {comm[:15]:15} {dur:6.0f}s fp {a0 / MIB:7.1f} -> {a1 / MIB:7.1f} (max {mx / MIB:7.1f}) "
              f"floor {f0 / MIB:7.1f} -> {f1 / MIB:7.1f} ({grew / max(dur, 1) / 1024:7.1f} KiB/s)  {tag}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError, EOFError) as e:  # json errors are ValueErrors
        print(f"inspect.py: {e}", file=sys.stderr)
        sys.exit(1)
