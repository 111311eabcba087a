"""Slow batches with and without the dashboard agent's node reporter every 5 s:
    cd results/2026-12-02_cpu_serving_long_levels/reporter && python analyse.py > analysis.txt
Per run: batches, their median service time, the batches over 4 times it, when those started
(seconds from the first batch, on the replica's clock), and the gaps between them."""
import os

import numpy as np

from bertg4.serve.loadtest import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))
for run in ("default", "reporter60s"):
    batches = {}
    for r in read_trace(os.path.join(HERE, run), ("loadtest",), "ok"):
        if r.get("clock"):
            batches[(r["replica"], r["batch"])] = (float(r["clock"].split()[1]), float(r["service-ms"]))
    first = min(t for t, _ in batches.values())
    med = float(np.median([s for _, s in batches.values()]))
    slow = sorted((t - first, s) for t, s in batches.values() if s > 4 * med)
    gaps = np.diff([t for t, _ in slow])
    print(f"{run}: {len(batches)} batches, median {med:.1f} ms, {len(slow)} over 4 x the median: "
          + ", ".join(f"{t:.2f} s ({s:.0f} ms)" for t, s in slow) + f"; gaps {np.round(gaps, 2).tolist()}")
