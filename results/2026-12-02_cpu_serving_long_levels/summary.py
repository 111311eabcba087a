"""The simulator against the server at longer load levels, from this record's records.jsonl:
    cd results/2026-12-02_cpu_serving_long_levels && python summary.py > summary.txt
Per run and level: requests timed, measured p50 and p99 (with the p99's 90 % interval), the
headline simulation's relative errors, Y where both are within 25 %. Then, per capacity
fraction, in how many runs it is within 25 %, and how wide the measured p99's 90 % interval is
(as a share of the p99) here and in results/2026-12-02_cpu_serving_blocked_wait (up to 1,000
timed requests a level, at most 30 s), at the same fractions."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
EARLIER = os.path.join(HERE, "..", "2026-12-02_cpu_serving_blocked_wait")
FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8)


def levels(folder: str, run: str):
    rows = [json.loads(line) for line in open(os.path.join(folder, run, "records.jsonl"))]
    s = next(r for r in rows if r["kind"] == "summary")
    poisson = [r for r in rows if r["kind"] == "loadtest"]
    assert len(poisson) == len(FRACTIONS), (folder, run, len(poisson))
    return s, list(zip(FRACTIONS, poisson))


def within(r) -> bool:
    a, b = r.get("p50_rel_error"), r.get("p99_rel_error")
    return a is not None and b is not None and abs(a) <= 0.25 and abs(b) <= 0.25


def width(r) -> float:
    lo, hi = r["latency_ms_p99_ci90"]
    return (hi - lo) / r["latency_ms_p99"]


def pct(x) -> str:
    return "  -  " if x is None else f"{x:+5.0%}"


runs = sorted(d for d in os.listdir(HERE) if d.startswith("run") and os.path.isdir(os.path.join(HERE, d)))
hits = {f: 0 for f in FRACTIONS}
widths = {f: [] for f in FRACTIONS}
for run in runs:
    s, rows = levels(HERE, run)
    print(f"{run}: {s['device_name']}, single request p50 {s['single_ms_p50']:.1f} ms, closed-loop capacity "
          f"{s['capacity_per_s']:.1f}/s, offline {s['offline_per_s_max_batch']:.1f}/s at batch {s['max_batch_size']}")
    for f, r in rows:
        ok = within(r)
        hits[f] += ok
        widths[f].append(width(r))
        lo, hi = r["latency_ms_p99_ci90"]
        print(f"  {f:4.0%} {r['rate_per_s']:6.1f}/s timed {r['timed']:5d} rejected {r['rejected']:4d} "
              f"p50 {r['latency_ms_p50']:6.1f} p99 {r['latency_ms_p99']:6.1f} [{lo:.0f}-{hi:.0f}] | sim p50 "
              f"{r['p50_ms_simulated']:6.1f} p99 {r['p99_ms_simulated']:6.1f} | err {pct(r['p50_rel_error'])} "
              f"{pct(r['p99_rel_error'])} {'Y' if ok else '-'} | p99 in interval: {r['p99_simulated_in_ci90']}")
total = sum(hits.values())
print(f"levels with p50 and p99 within 25 %: {total} of {len(runs) * len(FRACTIONS)}")
earlier = {f: [] for f in FRACTIONS}
earlier_runs = ("run1", "run2", "run3", "run4")
for run in earlier_runs:
    for f, r in levels(EARLIER, run)[1]:
        earlier[f].append(width(r))
print(f"per fraction: runs within 25 % (of {len(runs)}); median width of the measured p99's 90 % interval, "
      f"over the p99: here | blocked_wait {'/'.join(earlier_runs)}")
for f in FRACTIONS:
    print(f"  {f:4.0%}: {hits[f]} of {len(runs)}; {statistics.median(widths[f]):.0%} | "
          f"{statistics.median(earlier[f]):.0%}")
