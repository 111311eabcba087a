"""Where each Poisson level's slowest requests spent their time, from the kept requests:
    cd results/2026-12-02_cpu_serving_long_levels && python analyse.py > analysis.txt
Per run and level, over every answered request the level kept (its warm-up's too): the p99 of their latency; for the requests at or above it, the mean
latency, the mean time in the replica (from entering its batch queue to the result), of it the
mean service time of their batches, and the mean time outside the replica's handler (latency
less replica time: HTTP in and out, and the wait to be read); the same two means over every
request; the level's longest batch service time, and how many batches took over 3 times the
level's median service time, with the requests they held."""
import gzip
import json
import os
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

runs = sorted(d for d in os.listdir(HERE) if d.startswith("run") and os.path.isdir(os.path.join(HERE, d)))
for run in runs:
    levels = defaultdict(list)
    with gzip.open(os.path.join(HERE, run, "requests.jsonl.gz"), "rt") as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "loadtest" and r["outcome"] == "ok":
                levels[r["level"]].append(r)
    for level, rows in sorted(levels.items()):
        lat = np.array([r["latency_s"] * 1e3 for r in rows])
        rep = np.array([float(r["replica-ms"]) for r in rows])
        svc = np.array([float(r["service-ms"]) for r in rows])
        out = lat - rep
        p99 = np.percentile(lat, 99)
        top = lat >= p99
        batches = {(r["replica"], r["batch"]): float(r["service-ms"]) for r in rows}
        med = np.median(list(batches.values()))
        long = [k for k, s in batches.items() if s > 3 * med]
        held = sum((r["replica"], r["batch"]) in set(long) for r in rows)
        print(f"{run} level {level} ({rows[0]['rate_per_s']:.1f}/s, {len(rows)} answered): p99 {p99:.0f} ms | "
              f"slowest 1 %: latency {lat[top].mean():.0f}, replica {rep[top].mean():.0f} (service "
              f"{svc[top].mean():.0f}), outside {out[top].mean():.0f} | all: replica {rep.mean():.0f}, outside "
              f"{out.mean():.1f} | longest batch {max(batches.values()):.0f} ms; {len(long)} of {len(batches)} "
              f"batches over 3 x the median {med:.1f} ms, holding {held} requests")
