"""Which processes took CPU while the replica's slow batches ran, per run given:
    python analyse.py DIR [DIR ...]
A batch is slow when its service time exceeds 4 times the run's median. For each process
group (a process's name up to its first argument that is not a path, so all of one Ray role
together), the CPU it took (clock ticks, from sampler.py's cpu.jsonl) in samples that overlap
a slow batch, per second of those samples, against the same group's rate in all samples of the
load; the eight groups with the highest excess are listed, after the slow batches' start times
(seconds after the first batch of the load) and the gaps between them."""
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np

from bertg4.serve.loadtest import read_trace


def batches(run):
    out = {}
    for r in read_trace(run, ("loadtest",), "ok"):
        if r.get("clock"):
            c = [float(x) for x in r["clock"].split()]
            out[(r["replica"], r["batch"])] = (c[1], c[2])
    return sorted(out.values())


def group(name):
    name = re.sub(r"--[^ ]*=\S*", "", name)
    parts = name.split()
    if not parts:
        return "(kernel)"
    if parts[0].startswith("ray::"):
        return parts[0].split(":")[0] + "::" + parts[0][5:].split(".")[0]
    words = [os.path.basename(p) for p in parts[:3] if not p.startswith("-")]
    return " ".join(words)[:60]


def samples(run):
    names, rows, tick = {}, [], 100
    with open(os.path.join(run, "cpu.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "clock_ticks_per_s" in r:
                tick = r["clock_ticks_per_s"]
            elif "name" in r:
                names[r["pid"]] = group(r["name"])
            else:
                rows.append(r)
    return names, rows, tick


for run in sys.argv[1:]:
    b = batches(run)
    service = np.array([e - s for s, e in b])
    med = float(np.median(service))
    slow = [(s, e) for s, e in b if e - s > 4 * med]
    names, rows, tick = samples(run)
    t0, t1 = b[0][0], b[-1][1]
    load = [r for r in rows if t0 <= r["t"] <= t1]
    prev = {id(r): p["t"] for p, r in zip(load, load[1:])}
    total, during, dur_s = defaultdict(int), defaultdict(int), 0.0
    for r in load[1:]:
        lo, hi = prev[id(r)], r["t"]
        hit = any(s < hi and e > lo for s, e in slow)
        dur_s += (hi - lo) if hit else 0.0
        for pid, ticks in r["cpu"].items():
            g = names.get(int(pid), "?")
            total[g] += ticks
            if hit:
                during[g] += ticks
    span = load[-1]["t"] - load[0]["t"]
    print(f"{os.path.basename(run.rstrip('/'))}: {len(b)} batches, median {med * 1e3:.1f} ms, {len(slow)} over 4 x: "
          + ", ".join(f"{s - t0:.2f} s ({(e - s) * 1e3:.0f} ms)" for s, e in slow))
    print("  gaps between slow batches: " + ", ".join(f"{b2[0] - b1[0]:.2f} s" for b1, b2 in zip(slow, slow[1:])))
    print(f"  {len(load)} CPU samples over {span:.1f} s, {dur_s:.2f} s of them overlapping slow batches")
    rank = sorted(total, key=lambda g: -(during[g] / tick / max(dur_s, 1e-9) - total[g] / tick / span))
    for g in rank[:8]:
        print(f"  {g:60s} cores busy during slow batches {during[g] / tick / max(dur_s, 1e-9):5.2f}, in the load {total[g] / tick / span:5.2f}")
