"""The queueing bound of each run, recomputed from its records with the overhead that
`bertg4 loadtest` uses since these runs: the path outside the replica (`overhead_ms_p50`) at the
run's lowest measured rate. The runs' own summaries used the single-request latency over a
direct `predict`, which also holds the batcher's 5 ms wait (simulated a second time) and the
replica's own extra time.

    python results/2026-12-02_cpu_serving_queueing_bound/recompute_bound.py > .../bound.txt
"""
import json
import os

from bertg4.serve import simulate as S
from bertg4.serve.command import queueing_bound

HERE = os.path.dirname(os.path.abspath(__file__))
for run in ("minilm_run1", "minilm_run2", "bert_base"):
    recs = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"))]
    (s,) = [r for r in recs if r["kind"] == "summary"]
    levels = [r for r in recs if r.get("overhead_ms_p50") is not None and r["kind"] != "capacity"]
    low = min(levels, key=lambda r: r["rate_per_s"])
    curve, B = s["offline_service_ms_curve"], int(s["max_batch_size"])
    full = S.capacity({int(b): v / 1e3 for b, v in curve.items()}, B)
    bound = queueing_bound(curve, s["p99_target_ms"], B, float(s["batch_wait_ms"]), low["overhead_ms_p50"])
    print(f"{run}: p99 target {s['p99_target_ms']:.1f} ms; overhead outside the replica "
          f"{low['overhead_ms_p50']:.2f} ms at {low['rate_per_s']:.1f}/s (the run used "
          f"{s['queueing_bound_overhead_ms']:.2f} ms: bound {s['queueing_bound_per_s']:.2f}/s)")
    print(f"  bound {bound:.2f}/s = {bound / full:.1%} of the curve's full batches ({full:.2f}/s), "
          f"{bound / s['offline_per_s_max_batch']:.1%} of offline ({s['offline_per_s_max_batch']:.2f}/s); "
          f"served {s['max_rate_per_s']:.2f}/s = {s['max_rate_per_s'] / bound:.1%} of the bound, "
          f"{s['throughput_vs_offline']:.1%} of offline")
