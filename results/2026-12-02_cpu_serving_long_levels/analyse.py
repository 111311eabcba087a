"""Where each Poisson level's slowest requests spent their time, from the kept requests:
    cd results/2026-12-02_cpu_serving_long_levels && python analyse.py > analysis.txt
Per run and level, over every answered request the level kept (its warm-up's too): the p99 of their latency; for the requests at or above it, the mean
latency, the mean time in the replica (from entering its batch queue to the result), of it the
mean service time of their batches, and the mean time outside the replica's handler (latency
less replica time: HTTP in and out, and the wait to be read); the same two means over every
request; the level's longest batch service time, and how many batches took over 3 times the
level's median service time, with the requests they held, and the most of those that started
within any 3 s. Last, when the batches over 4 times
the median started (the replica's clock): of the gaps of over 0.5 s between consecutive ones
within a level, how many lie within 0.1 s of a multiple of 10 s (of gaps spread at random, about 2 %
would), and of 5 s (about 4 %)."""
import os
from collections import defaultdict

import numpy as np

from bertg4.serve.loadtest import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))

PERIODS = (10.0, 5.0)
periodic = {p: [0, 0] for p in PERIODS}
runs = sorted(d for d in os.listdir(HERE) if d.startswith("run") and os.path.isdir(os.path.join(HERE, d)))
for run in runs:
    levels = defaultdict(list)
    for r in read_trace(os.path.join(HERE, run), ("loadtest",), "ok"):
        levels[r["level"]].append(r)
    for level, rows in sorted(levels.items()):
        lat = np.array([r["latency_s"] * 1e3 for r in rows])
        rep = np.array([float(r["replica-ms"]) for r in rows])
        svc = np.array([float(r["service-ms"]) for r in rows])
        out = lat - rep
        p99 = np.percentile(lat, 99)
        top = lat >= p99
        batches = {(r["replica"], r["batch"]): float(r["service-ms"]) for r in rows}
        starts = {(r["replica"], r["batch"]): float(r["clock"].split()[1]) for r in rows if r.get("clock")}
        med = np.median(list(batches.values()))
        long = {k for k, s in batches.items() if s > 3 * med}
        t_long = np.array(sorted(starts[k] for k in long if k in starts))
        window = int(max((np.searchsorted(t_long, t + 3.0) - i for i, t in enumerate(t_long)), default=0))
        d = np.diff(sorted(starts[k] for k, s in batches.items() if s > 4 * med and k in starts))
        d = d[d > 0.5]
        for period in PERIODS:
            near = np.abs(d - period * np.round(d / period)) < 0.1
            periodic[period][0] += int((near & (np.round(d / period) >= 1)).sum())
            periodic[period][1] += len(d)
        held = sum((r["replica"], r["batch"]) in long for r in rows)
        print(f"{run} level {level} ({rows[0]['rate_per_s']:.1f}/s, {len(rows)} answered): p99 {p99:.0f} ms | "
              f"slowest 1 %: latency {lat[top].mean():.0f}, replica {rep[top].mean():.0f} (service "
              f"{svc[top].mean():.0f}), outside {out[top].mean():.0f} | all: replica {rep.mean():.0f}, outside "
              f"{out.mean():.1f} | longest batch {max(batches.values()):.0f} ms; {len(long)} of {len(batches)} "
              f"batches over 3 x the median {med:.1f} ms, holding {held} requests, at most {window} within 3 s")
print("gaps of over 0.5 s between batches over 4 x the median within a level: "
      + "; ".join(f"{a} of {n} within 0.1 s of a multiple of {p:g} s" for p, (a, n) in periodic.items()))
