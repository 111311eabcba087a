"""Per run of run.sh (the live runs): each load level's share of the closed-loop capacity, the
simulated p50/p99 errors, whether both are within 25 %, and the longest batch a replica computed
there against the level's median (a stall the simulator draws no factor that large for shows as
a p99 simulated too low), from the requests the run kept.

    python results/2026-12-04_cpu_serving_two_replica_simulator/summary.py [RUN ...]
"""
import json
import os
import sys

import numpy as np

from bertg4.serve.loadtest import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))


def main(runs):
    for run in runs:
        recs = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"), encoding="utf-8")]
        rows = read_trace(os.path.join(HERE, run))
        levels = [r for r in recs if "sent" in r]
        cap = next(r for r in levels if r["kind"] == "capacity")["capacity_per_s"]
        summ = next((r for r in recs if "sent" not in r), {})
        within = 0
        print(f"{run}: capacity {cap:.1f}/s, served at p99 <= {summ.get('p99_target_ms', 0):.1f} ms: "
              f"{summ.get('max_rate_per_s', 0):.1f}/s")
        print("| kind | of capacity | replicas simulated | p50 err | p99 err | both within 25 % | "
              "longest batch ms | median batch ms |")
        print("|---|---:|---:|---:|---:|---|---:|---:|")
        for i, r in enumerate(levels):
            if r["kind"] == "capacity":
                continue
            batches = {(q.get("replica"), q.get("batch")): float(q["service-ms"]) for q in rows
                       if q["level"] == recs.index(r) and q["outcome"] == "ok" and "service-ms" in q}
            ok = abs(r["p50_rel_error"]) <= 0.25 and abs(r["p99_rel_error"]) <= 0.25
            within += ok and r["kind"] == "loadtest"
            print(f"| {r['kind']} | {r['rate_per_s'] / cap:.0%} | {r.get('simulated_replicas')} | "
                  f"{r['p50_rel_error']:+.1%} | {r['p99_rel_error']:+.1%} | {'yes' if ok else 'no'} | "
                  f"{max(batches.values()):.1f} | {np.median(list(batches.values())):.1f} |")
        print(f"capacity fractions with both within 25 %: {within} of 5\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["live1", "live2", "live3", "live4", "live5", "live6"])
