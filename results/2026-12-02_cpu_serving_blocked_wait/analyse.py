"""What the kept requests (requests.jsonl.gz) say about each level's batches:
    cd results/2026-12-02_cpu_serving_blocked_wait && python analyse.py > analysis.txt
- in flight: requests sent before a batch that was not full started, still on their way into the
  replica's handler then (x-bertg4-clock), served by a later batch: what the batcher could not see;
- whether requests arriving while a batch computes slow it: the least-squares slope of a batch's
  service time (over the mean of its size in that level) against the requests the load generator
  sent during it. Counted over the whole batch, a batch that is slow for any reason lets more
  requests in, so that slope is positive without any effect; counted over the batch's first
  10 ms (a window its length does not set: batches took at least about 10 ms) it measures the
  effect, and over the 10 ms before the batch (which cannot have caused it) it shows the noise;
- the slowest answers: when the ten slowest timed requests (sent after the level's warm-up) were
  sent, and over how long the requests of more than 200 ms were."""
import collections
import os

import numpy as np

from bertg4.serve.loadtest import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))
WINDOW_S = 0.010
WARMUP_S = 1.0  # the levels' warm-up (the records' warmup_s)
for run in ("run1", "run2", "run3", "run4", "batch8"):
    levels = collections.defaultdict(list)
    for q in read_trace(os.path.join(HERE, run)):
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
        sends = np.sort([q["start"] for q in reqs if "start" in q])  # (these runs kept it for answers only)
        sent = np.array([q["start"] for q in ok])
        into = np.array([q["t0"] for q in ok])
        began = np.array([q["bs"] for q in ok])

        def between(t0, t1):
            return int(np.searchsorted(sends, t1, "left") - np.searchsorted(sends, t0, "right"))
        inflight, whole, first, before, factor = [], [], [], [], []
        for b in order:
            bs, be = b[0]["bs"], b[0]["be"]
            if len(b) < B:  # sent before it started, not yet in the handler, served later
                inflight.append(int(((sent < bs) & (into > bs) & (began > bs)).sum()))
            whole.append(between(bs, be))
            first.append(between(bs, bs + WINDOW_S))
            before.append(between(bs - WINDOW_S, bs))
            factor.append((be - bs) / mean[len(b)])
        factor = np.array(factor)

        def slope(n):
            n = np.asarray(n, dtype=float)
            return float(np.polyfit(n, factor, 1)[0]) if len(set(n.tolist())) > 1 else float("nan")
        share = float(np.mean(np.array(inflight) > 0)) if inflight else 0.0
        timed = [q for q in ok if q["sent_at"] >= WARMUP_S]
        lat = np.array([q["latency_s"] for q in timed])
        at = np.array([q["sent_at"] for q in timed])
        top = at[np.argsort(lat)[-10:]]
        slow = at[lat > 0.2]
        slow_text = f"{len(slow)} over 200 ms" + (f", sent {slow.min():.1f}-{slow.max():.1f} s" if len(slow) else "")
        size = np.mean([len(b) for b in order])
        print(f"  {kind:8s} {rate:6.1f}/s: {len(order)} batches, mean {size:.2f} requests, shortest "
              f"{1e3 * min(b[0]['be'] - b[0]['bs'] for b in order):.1f} ms; not full with a request in flight at "
              f"their start {share:4.0%}; service time per request sent during the whole batch {slope(whole):+.3f}, "
              f"its first 10 ms {slope(first):+.3f}, the 10 ms before it {slope(before):+.3f}; ten slowest sent "
              f"{top.min():.2f}-{top.max():.2f} s, {slow_text}")
