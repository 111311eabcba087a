"""Which of the replica's differences from the ideal server cost the rate at the p99 target:
the simulator's highest rate (bertg4.serve.simulate.max_rate, one seeded simulation, as the
queueing bound) with one input at a time taken from the run's best level instead of the ideal:
  ideal                the offline curve, no work between batches (the summary's queueing_bound_per_s)
  + replica curve      the best level's service_ms_curve (measured inside the replica)
  + gap                and its simulated_gap_ms after each batch
Each: the overhead outside the replica at the run's lowest rate, the batcher's 5 ms wait.

    python results/2026-12-02_cpu_serving_queueing_bound/apportion.py > .../apportion.txt
"""
import json
import os

from bertg4.serve import simulate as S

HERE = os.path.dirname(os.path.abspath(__file__))
for run in ("minilm_run1", "minilm_run2", "bert_base"):
    recs = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"))]
    (s,) = [r for r in recs if r["kind"] == "summary"]
    levels = [r for r in recs if r.get("overhead_ms_p50") is not None and r["kind"] != "capacity"]
    low = min(levels, key=lambda r: r["rate_per_s"])
    best = max((r for r in levels if r["achieved_per_s"] == s["max_rate_per_s"]), key=lambda r: r["rate_per_s"])
    B, wait, target = int(s["max_batch_size"]), s["batch_wait_ms"] / 1e3, s["p99_target_ms"] / 1e3
    overhead = [low["overhead_ms_p50"] / 1e3]
    offline = {int(b): v / 1e3 for b, v in s["offline_service_ms_curve"].items()}
    replica = {int(b): v / 1e3 for b, v in best["service_ms_curve"].items()}
    gap = (best.get("simulated_gap_ms") or 0.0) / 1e3
    print(f"{run}: target {1e3 * target:.1f} ms; best level {best['kind']} at {best['rate_per_s']:.1f}/s offered, "
          f"{best['achieved_per_s']:.1f}/s served; its curve "
          + " / ".join(f"{1e3 * replica[b]:.1f}" for b in sorted(replica)) + " ms against offline "
          + " / ".join(f"{1e3 * offline[b]:.1f}" for b in sorted(offline)) + f" ms; gap {1e3 * gap:.2f} ms")
    for name, curve, g in (("ideal", offline, 0.0), ("+ replica curve", replica, 0.0), ("+ gap", replica, gap)):
        r = S.max_rate(curve, target, B, wait, overhead, gap_s=g)
        print(f"  {name:16s} {r:7.2f}/s = {r / s['offline_per_s_max_batch']:.1%} of offline")
    print(f"  {'served':16s} {s['max_rate_per_s']:7.2f}/s = {s['throughput_vs_offline']:.1%} of offline")
