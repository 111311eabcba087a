"""The load records of results/2026-12-04_cpu_serving_haproxy_two_replicas made again from the
requests they kept (requests.jsonl.gz), with the simulator of several replicas: each level's
answers (their batch sizes, service times, gaps and the time outside the replica) fed to
bertg4.serve.loadtest.load_record, whose simulated server is now that many replicas behind a
least-connections dispatcher (HAProxy's `balance leastconn`, the ingress those runs had). The
servers of those runs did not report num_replicas yet; they ran `--replicas 2`, given here.

    python results/2026-12-04_cpu_serving_two_replica_simulator/rescore.py [RUN ...]

writes rescored_RUN.jsonl (the records made again) and rescored_RUN.png (measured and simulated p50/p99 against
the offered rate) beside this script, and prints measured against simulated p50/p99.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
from bertg4.serve.loadtest import CAPACITY, load_record, plot, read_trace  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "2026-12-04_cpu_serving_haproxy_two_replicas")
# what the server's metadata said (the records keep it), and what it would say now
SERVER_KEYS = ("task", "model", "engine", "recipe", "dtype", "device", "device_name", "seq_length", "padding",
               "max_batch_size", "batch_wait_ms", "max_batch_tokens", "allocator", "float32_matmul",
               "max_ongoing_requests", "max_queued_requests")
REPLICAS = 2  # run.sh: --replicas 2


def rescore(run: str) -> list[dict]:
    records = [json.loads(line) for line in open(os.path.join(SRC, run, "records.jsonl"), encoding="utf-8")]
    rows = read_trace(os.path.join(SRC, run))
    out = []
    for level, old in enumerate(records):
        if "sent" not in old:  # the summary line
            continue
        res = [r for r in rows if r["level"] == level]
        if len(res) != old["sent"]:
            raise SystemExit(f"{run} level {level}: {len(res)} requests kept, the record sent {old['sent']}")
        server = {k: old.get(k) for k in SERVER_KEYS}
        server["num_replicas"] = REPLICAS
        ok = old["ok"]
        # the run's fields load_record reads: its span, and the schedule's length (achieved = ok / schedule)
        trial = {"results": res, "rate_per_s": old["rate_per_s"], "span_s": old["duration_s"],
                 "schedule_s": ok / old["achieved_per_s"] if old["achieved_per_s"] else 0.0}
        if old["kind"] == CAPACITY:
            trial["concurrency"] = old["concurrency"]
        rec = load_record(trial, server, warmup_s=old["warmup_s"], timer=old.get("simulator_timer") or "idle")
        for k in ("latency_ms_p50", "latency_ms_p99", "ok", "sent"):  # the same answers: the same measurement
            if rec[k] != old[k]:
                raise SystemExit(f"{run} level {level}: {k} {rec[k]} made again, {old[k]} in the record")
        rec["kind"] = old["kind"]
        if old["kind"] == CAPACITY:
            rec["capacity_per_s"] = old["capacity_per_s"]
        out.append(rec)
    return out


def pct(x):
    return "—" if x is None else f"{x:+.0%}"


def main(runs):
    for run in runs:
        recs = rescore(run)
        with open(os.path.join(HERE, f"rescored_{run}.jsonl"), "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        fig = plot(recs)
        fig.axes[0].set_title(fig.axes[0].get_title() + f"\n{run}, two replicas simulated", fontsize=9)
        fig.savefig(os.path.join(HERE, f"rescored_{run}.png"), dpi=110, bbox_inches="tight")
        cap = next(r for r in recs if r["kind"] == CAPACITY)
        print(f"{run}: closed-loop capacity {cap['capacity_per_s']:.1f}/s; the batches' own (2 replicas) "
              f"{cap['capacity_service_per_s']:.1f}/s")
        print("| kind | rate/s | of capacity | p50 ms | sim p50 | err | p99 ms | sim p99 | err | "
              "p99 mean curve err | mean batch | sim mean batch |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in recs:
            if r["kind"] == CAPACITY:
                continue
            print(f"| {r['kind']} | {r['rate_per_s']:.1f} | {r['rate_per_s'] / cap['capacity_per_s']:.0%} | "
                  f"{r['latency_ms_p50']:.1f} | {r['p50_ms_simulated']:.1f} | {pct(r['p50_rel_error'])} | "
                  f"{r['latency_ms_p99']:.1f} | {r['p99_ms_simulated']:.1f} | {pct(r['p99_rel_error'])} | "
                  f"{pct(r['p99_rel_error_mean_curve'])} | {r['mean_batch_size']:.2f} | "
                  f"{r['mean_batch_size_simulated']:.2f} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:] or ["run1", "run2", "run3"])
