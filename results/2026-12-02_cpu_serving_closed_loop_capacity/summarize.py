"""Tabulates this record's four runs (records.jsonl of each): the simulator against the
measured percentiles at each capacity fraction, and where the served throughput stands.
    python results/2026-12-02_cpu_serving_closed_loop_capacity/summarize.py > .../summary.txt"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = ["minilm_run1", "minilm_run2", "minilm_run3", "bert_base"]


def pct(x):
    return "—" if x is None else f"{x:+.0%}"


def ms(x):
    return "—" if x is None else f"{x:.1f}"


for run in RUNS:
    rows = [json.loads(line) for line in open(os.path.join(HERE, run, "records.jsonl"))]
    summary = next(r for r in rows if r["kind"] == "summary")
    cap = next(r for r in rows if r["kind"] == "capacity")
    levels = [r for r in rows if r["kind"] == "loadtest"]
    off = summary["offline_per_s_max_batch"]
    print(f"== {run}: offline {off:.1f}/s at batch {summary['max_batch_size']}; closed-loop capacity "
          f"{cap['capacity_per_s']:.1f}/s ({cap['capacity_per_s'] / off:.0%} of offline; the batches alone "
          f"{cap['capacity_service_per_s']:.1f}/s); served at p99 <= {summary['p99_target_ms']:.1f} ms: "
          f"{summary['max_rate_per_s']:.1f}/s = {summary['throughput_vs_offline']:.0%} of offline, "
          f"{summary['max_rate_per_s'] / cap['capacity_per_s']:.0%} of the closed-loop capacity; queueing bound "
          f"{summary['queueing_bound_per_s']:.1f}/s")
    print("  fraction  rate/s  p50 meas [90%]          sim (err)      p99 meas [90%]            sim (err)"
          "      p99 with spread (err)  in interval  503 meas/sim")
    for r in levels:
        frac = r["rate_per_s"] / cap["capacity_per_s"]
        p50ci, p99ci = r["latency_ms_p50_ci90"], r["latency_ms_p99_ci90"]
        print(f"  {frac:7.0%} {r['rate_per_s']:7.1f}  {ms(r['latency_ms_p50'])} [{p50ci[0]:.1f}-{p50ci[1]:.1f}]"
              f"  {ms(r['p50_ms_simulated'])} ({pct(r['p50_rel_error'])})"
              f"  {ms(r['latency_ms_p99'])} [{p99ci[0]:.1f}-{p99ci[1]:.1f}]"
              f"  {ms(r['p99_ms_simulated'])} ({pct(r['p99_rel_error'])})"
              f"  {ms(r['p99_ms_simulated_spread'])} ({pct(r['p99_rel_error_spread'])})"
              f"  p50 {r['p50_simulated_in_ci90']} p99 {r['p99_simulated_in_ci90']}"
              f"  {r['rejected_fraction']:.1%}/{r['rejected_fraction_simulated']:.1%}")
    within = [abs(r["p50_rel_error"]) <= 0.25 and abs(r["p99_rel_error"]) <= 0.25 for r in levels]
    passed = ", ".join(format(r["rate_per_s"] / cap["capacity_per_s"], ".0%") for r, ok in zip(levels, within) if ok)
    print(f"  p50 and p99 within 25 %: {sum(within)} of {len(levels)} levels ({passed or 'none'})")
