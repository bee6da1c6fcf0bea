#!/usr/bin/python3.11
"""Time to flag against leak rate and tide size, from a labelled record (record.py's `curve`).

  curve.py RECORD.jsonl[.gz] LEAKTRACE_BINARY [--json]

Replays RECORD with `LEAKTRACE analyze RECORD --json --events` (the live agent's own code) and, for
every labelled leak, takes the first `leak_suspected` of that life: seconds from the leak's start
(the life's first tick in the record, or its label's `leak_starts`) to that event. Prints a
markdown table (rows: leak rate; columns: tide size, from the label's "in random tides of A-B MiB")
and the issue's targets (>= 1 MiB/s within 60 s; 64 KiB/s without tides within 3 min; 80 KiB/s in
20-60 MiB tides within 3 min), each with its verdict. Exit status 0 even when a target is missed
(this prints a curve; the corpus test judges). Bad input: one line on stderr, exit 1.
"""
import gzip
import json
import re
import subprocess
import sys

KIB, MIB = 1 << 10, 1 << 20
TIDES = re.compile(r"in random tides of (\d+)-(\d+) MiB")


def read_record(path):
    """(labels, spans): labels as written; spans[(pid, start)] = [first t, last t, exited]."""
    opener = gzip.open if path.endswith(".gz") else open
    labels, spans = [], {}
    with opener(path, "rt") as f:
        header = json.loads(f.readline())
        if "leaktrace_record" not in header:
            raise ValueError("not a leaktrace record (no header)")
        for line in f:
            rec = json.loads(line)
            if "label" in rec:
                labels.append(rec["label"])
                continue
            t = rec.get("t")
            if t is None:
                continue
            for key, ident in (("new", lambda e: (e["pid"], e["start"])), ("obs", lambda e: (e[0], e[1]))):
                for e in rec.get(key, []):
                    s = spans.setdefault(ident(e), [t, t, False])
                    s[1] = max(s[1], t)
            for e in rec.get("exit", []):
                s = spans.setdefault((e[0], e[1]), [t, t, False])
                s[1], s[2] = max(s[1], t), True
    return labels, spans


def replay(binary, path):
    """Times (s since the recording started) of every leak_suspected, by pid."""
    out = subprocess.run([binary, "analyze", path, "--json", "--events"], capture_output=True, text=True)
    if out.returncode != 0:
        msg = out.stderr.strip().splitlines()
        raise RuntimeError(f"{binary} analyze failed: {msg[-1] if msg else out.returncode}")
    flags = {}
    for line in out.stdout.splitlines():
        ev = json.loads(line)
        if ev.get("event") != "leak_suspected":
            continue
        t = ev["t"] if "t" in ev else ev["ts_ns"] / 1e9
        flags.setdefault(ev["pid"], []).append(t)
    return flags


def tide_of(what):
    m = TIDES.search(what)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def tide_name(tide):
    lo, hi = tide
    if hi == 0:
        return "no tides"
    return f"{round((lo + hi) / 2)} MiB tides ({lo}-{hi})"


def rate_name(rate):
    return f"{rate // MIB} MiB/s" if rate >= MIB and rate % MIB == 0 else f"{round(rate / KIB)} KiB/s"


def measure(labels, spans, flags):
    """One row per labelled leak: rate, tide, seconds to the first flag (None), observed seconds."""
    rows = []
    for lab in labels:
        if not lab.get("leak") or not lab.get("rate"):
            continue
        span = spans.get((lab["pid"], lab["start"]))
        if span is None:
            continue
        first, last, exited = span
        start = lab.get("leak_starts", first)
        # The flags of this life: its pid, within its span (a pid may be reused by a later life).
        mine = [t for t in flags.get(lab["pid"], []) if first <= t <= last + 1.0]
        after = [t for t in mine if t >= start]
        rows.append({
            "pid": lab["pid"],
            "rate": lab["rate"],
            "tide": tide_of(lab.get("what", "")),
            "flag_secs": round(after[0] - start, 1) if after else None,
            "alarms": len(mine),
            "early": len(mine) - len(after),
            "observed": round(last - start),
            "exited": exited,
            "flag_within": lab.get("flag_within"),
            "what": lab.get("what", ""),
        })
    return rows


def cell(r):
    if r["flag_secs"] is None:
        how = "exited" if r["exited"] else "record ended"
        s = f"not flagged ({how} after {r['observed']} s)"
    else:
        s = f"{r['flag_secs']:.0f} s"
    if r["alarms"] > 1:
        s += f" ({r['alarms']} alarms)"
    return s


def targets(rows):
    """The issue's figures: (text, rows concerned, limit in seconds)."""
    return [
        ("leaks >= 1 MiB/s flagged <= 60 s", [r for r in rows if r["rate"] >= MIB], 60),
        ("64 KiB/s without tides flagged <= 3 min", [r for r in rows if r["rate"] == 64 * KIB and r["tide"][1] == 0],
         180),
        ("80 KiB/s in 20-60 MiB tides flagged <= 3 min",
         [r for r in rows if r["rate"] == 80 * KIB and r["tide"] == (20, 60)], 180),
    ]


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    if len(args) != 2:
        print("usage: curve.py RECORD.jsonl[.gz] LEAKTRACE_BINARY [--json]", file=sys.stderr)
        return 2
    path, binary = args
    try:
        labels, spans = read_record(path)
        flags = replay(binary, path)
    except (OSError, ValueError, KeyError, IndexError, EOFError, RuntimeError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    rows = measure(labels, spans, flags)
    if not rows:
        print(f"error: {path}: no labelled leak with a rate", file=sys.stderr)
        return 1
    if "--json" in sys.argv[1:]:
        for r in rows:
            print(json.dumps(r))
        return 0
    tides = sorted({r["tide"] for r in rows}, key=lambda t: (t[0] + t[1], t))
    rates = sorted({r["rate"] for r in rows})
    print("| leak rate | " + " | ".join(tide_name(t) for t in tides) + " |")
    print("|---|" + "---|" * len(tides))
    for rate in rates:
        cells = []
        for t in tides:
            rs = [r for r in rows if r["rate"] == rate and r["tide"] == t]
            cells.append(", ".join(cell(r) for r in rs) if rs else "")
        print(f"| {rate_name(rate)} | " + " | ".join(cells) + " |")
    print()
    for text, rs, limit in targets(rows):
        if not rs:
            print(f"- {text}: no such leak in this record")
            continue
        worst = [r["flag_secs"] for r in rs]
        ok = all(s is not None and s <= limit for s in worst)
        shown = ", ".join("not flagged" if s is None else f"{s:.0f} s" for s in worst)
        print(f"- {text}: {'met' if ok else 'MISSED'} ({shown})")
    odd = [r for r in rows if r["early"] or r["alarms"] > 1]
    for r in odd:
        print(f"- pid {r['pid']} ({r['what']}): {r['alarms']} alarms, {r['early']} before its leak started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
