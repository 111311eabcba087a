"""What the kept requests (requests.jsonl.gz) say about each level's batches:
    python results/2026-12-02_cpu_serving_blocked_wait/analyse.py > results/2026-12-02_cpu_serving_blocked_wait/analysis.txt
- in flight: requests sent before a batch that was not full started, still on their way into the
  replica's handler then (x-bertg4-clock), served by a later batch: what the batcher could not see;
- arrivals during a batch: requests the load generator sent while the batch computed, and how a
  batch's service time (over the mean of its size in that level) grows with them: a least-squares
  slope per arrival and the correlation."""
import collections
import gzip
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
for run in ("run1", "run2", "run3", "run4", "batch8"):
    levels = collections.defaultdict(list)
    with gzip.open(os.path.join(HERE, run, "requests.jsonl.gz"), "rt") as f:
        for line in f:
            q = json.loads(line)
            levels[(q["level"], q["kind"], q["rate_per_s"])].append(q)
    print(run)
    for (_, kind, rate), reqs in sorted(levels.items()):
        ok = [q for q in reqs if q["outcome"] == "ok" and "clock" in q]
        for q in ok:
            q["t0"], q["bs"], q["be"], _ = map(float, q["clock"].split())
        batches = collections.defaultdict(list)
        for q in ok:
            batches[(q.get("replica"), int(q["batch"]))].append(q)
        B = max(len(b) for b in batches.values())
        order = sorted(batches.values(), key=lambda b: b[0]["bs"])
        per = collections.defaultdict(list)
        for b in order:
            per[len(b)].append(b[0]["be"] - b[0]["bs"])
        mean = {k: float(np.mean(v)) for k, v in per.items()}
        sends = np.sort([q["start"] for q in reqs if "start" in q])  # (a 503 from this code has none)
        starts = np.array([b[0]["bs"] for b in order])
        sent = np.array([q["start"] for q in ok])
        into = np.array([q["t0"] for q in ok])
        began = np.array([q["bs"] for q in ok])
        inflight, during, factor = [], [], []
        for b, bs in zip(order, starts):
            be = b[0]["be"]
            if len(b) < B:  # sent before it started, not yet in the handler, served later
                inflight.append(int(((sent < bs) & (into > bs) & (began > bs)).sum()))
            during.append(int(((sends > bs) & (sends < be)).sum()))
            factor.append((be - bs) / mean[len(b)])
        during, factor = np.array(during), np.array(factor)
        slope = float(np.polyfit(during, factor, 1)[0]) if len(set(during.tolist())) > 1 else float("nan")
        r = float(np.corrcoef(during, factor)[0, 1]) if len(set(during.tolist())) > 1 else float("nan")
        share = float(np.mean(np.array(inflight) > 0)) if inflight else 0.0
        print(f"  {kind:8s} {rate:6.1f}/s: {len(order)} batches, mean {np.mean([len(b) for b in order]):.2f} requests; "
              f"batches not full with a request in flight at their start {share:4.0%}; arrivals during a batch "
              f"{during.mean():.2f} on average, service time {slope:+.3f} of its size's mean per arrival (r {r:+.2f})")
