"""Per round: ms per batch of each engine, and ORT's INT8 over bertg4's onednn-int8 (the round's
own ratio); medians over the rounds of each setting (onednn_p*/ with the float32 matmuls on
oneDNN, default_p*/ with BERTG4_ONEDNN_MATMUL=0).

    python results/2026-12-02_cpu_onednn_matmul/summarize.py > results/2026-12-02_cpu_onednn_matmul/summary.txt
"""
import glob
import json
import os
import statistics

D = os.path.dirname(os.path.abspath(__file__))
KEYS = (("pt", "onednn-int8"), ("pt", "int8"), ("ort", "int8"))
for setting in ("onednn", "default"):
    rows = {}
    for path in sorted(glob.glob(os.path.join(D, f"{setting}_p*", "records.jsonl"))):
        pair = os.path.basename(os.path.dirname(path))
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            if r.get("status", "ok") != "ok" or r.get("latency_ms_mean") is None:
                continue
            key = (pair, r.get("round", 1), r["batch_size"])
            rows.setdefault(key, {})[(r["engine"], r["recipe"])] = (r["latency_ms_mean"], r.get("float32_matmul"))
    print(f"== {setting}: mean ms per batch by round; ratio = ORT INT8 / pt onednn-int8")
    for batch in (1, 8):
        ratios, ms = [], {k: [] for k in KEYS}
        for (pair, rnd, b), got in sorted(rows.items()):
            if b != batch or not all(k in got for k in KEYS):
                continue
            ratio = got[("ort", "int8")][0] / got[("pt", "onednn-int8")][0]
            ratios.append(ratio)
            for k in KEYS:
                ms[k].append(got[k][0])
            print(f"  batch {b} {pair} round {rnd}: " + "  ".join(f"{e} {r} {got[(e, r)][0]:7.1f}" for e, r in KEYS)
                  + f"  ratio {ratio:.2f}x  (pt onednn-int8 float32_matmul: {got[('pt', 'onednn-int8')][1]})")
        if ratios:
            print(f"  batch {batch}, {len(ratios)} rounds: median " + "  ".join(
                f"{e} {r} {statistics.median(ms[(e, r)]):.1f} ms" for e, r in KEYS)
                + f"; ratio median {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
