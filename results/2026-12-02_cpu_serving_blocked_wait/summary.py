"""The simulator against the server in this record's runs, from their records.jsonl:
    cd results/2026-12-02_cpu_serving_blocked_wait && python summary.py > summary.txt
or of another record with runs of the same names (those of them it has): python summary.py DIR
Per level: measured p50/p99, and each simulation's relative error (headline: the measured spread,
the overhead less the batches waited for on the way in; mean: the mean curve, same overhead;
raw: the mean curve with all of the overhead), Y where both p50 and p99 are within 25 %."""
import json
import os
import sys

HERE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
MODELS = (("headline", ""), ("mean", "_mean_curve"), ("raw", "_raw_overhead"))


def within(r, suffix):
    a, b = r.get("p50_rel_error" + suffix), r.get("p99_rel_error" + suffix)
    return a is not None and b is not None and abs(a) <= 0.25 and abs(b) <= 0.25


def pct(x):
    return "  -  " if x is None else f"{x:+5.0%}"


def ms_or_dash(x):
    return "  -  " if x is None else f"{x:5.1f}"


totals = {m: [0, 0] for m, _ in MODELS}
for run in [r for r in ("run1", "run2", "run3", "run4", "batch8") if os.path.isdir(os.path.join(HERE, r))]:
    rows = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"))]
    s = next(r for r in rows if r["kind"] == "summary")
    print(f"{run}: max batch {s['max_batch_size']}, single request p50 {s['single_ms_p50']:.1f} ms, offline "
          f"{s['offline_per_s_max_batch']:.1f}/s, closed-loop capacity {s['capacity_per_s']:.1f}/s, served at "
          f"p99 <= {s['p99_target_ms']:.0f} ms: {s['max_rate_per_s']:.1f}/s = {s['throughput_vs_offline']:.0%} "
          f"of offline (queueing bound {s['queueing_bound_vs_offline']:.0%})")
    for r in rows:
        if r["kind"] in ("summary", "capacity"):
            continue
        frac = r["rate_per_s"] / s["capacity_per_s"]
        cells = []
        for m, suf in MODELS:
            ok = within(r, suf)
            totals[m][0] += ok
            totals[m][1] += 1
            e50, e99 = pct(r.get("p50_rel_error" + suf)), pct(r.get("p99_rel_error" + suf))
            cells.append(f"{m} {e50} {e99} {'Y' if ok else '-'}")
        ci = r["latency_ms_p99_ci90"]
        print(f"  {r['kind']:8s} {r['rate_per_s']:6.1f}/s ({frac:4.0%}) rejected {r['rejected']:3d} "
              f"p50 {r['latency_ms_p50']:6.1f} p99 {r['latency_ms_p99']:6.1f} [{ci[0]:.0f}-{ci[1]:.0f}] "
              f"blocked {ms_or_dash(r.get('overhead_blocked_ms_mean'))} ms | " + " | ".join(cells))
print("levels with p50 and p99 within 25 %: " + ", ".join(f"{m} {a} of {n}" for m, (a, n) in totals.items()))
