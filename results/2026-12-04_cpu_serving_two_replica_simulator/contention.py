"""Do the two replicas slow each other down? For each batch of each load level of the live runs:
the share of its compute time during which the other replica computed a batch too (from the
x-bertg4-clock times the requests kept), and its service time over the level's median for its
size. The simulator draws each batch's factor independently of the other replica; a strong
correlation here would say it should not.

    python results/2026-12-04_cpu_serving_two_replica_simulator/contention.py [RUN ...]
"""
import json
import os
import sys

import numpy as np

from bertg4.serve.loadtest import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))


def batches(rows, level):
    """``(size, start, end, replica)`` of each distinct batch of the level."""
    out = {}
    for q in rows:
        if q["level"] == level and q["outcome"] == "ok" and "clock" in q:
            _, start, end, _ = (float(x) for x in q["clock"].split())
            out[(q["replica"], q["batch"])] = (int(q["batch-size"]), start, end, q["replica"])
    return list(out.values())


def overlap(start, end, spans):
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e in spans if e > start and s < end)


def main(runs):
    print("| run | kind | rate/s | batches | corr(overlap, factor) | factor, other idle (< 20 % overlap) | "
          "factor, other busy (> 80 %) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run in runs:
        rows = read_trace(os.path.join(HERE, run))
        recs = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"), encoding="utf-8")]
        for level, rec in enumerate(recs):
            if "sent" not in rec or rec["kind"] == "capacity":
                continue
            bs = batches(rows, level)
            replicas = sorted({b[3] for b in bs})
            if len(replicas) != 2:
                continue
            median = {k: np.median([e - s for n, s, e, _ in bs if n == k]) for k in {b[0] for b in bs}}
            spans = {r: [(s, e) for _, s, e, q in bs if q == r] for r in replicas}
            ov, f = [], []
            for n, s, e, r in bs:
                other = replicas[1 - replicas.index(r)]
                ov.append(overlap(s, e, spans[other]) / (e - s))
                f.append((e - s) / median[n])
            ov, f = np.array(ov), np.array(f)
            idle, busy = f[ov < 0.2], f[ov > 0.8]
            print(f"| {run} | {rec['kind']} | {rec['rate_per_s']:.0f} | {len(bs)} | {np.corrcoef(ov, f)[0, 1]:+.2f} | "
                  f"{idle.mean():.2f} ({len(idle)}) | {busy.mean():.2f} ({len(busy)}) |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["live1", "live2", "live3", "live4", "live5", "live6"])
