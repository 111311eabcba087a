"""The ladder suite: every rung of the optimization ladder, timed and checked in one run.

``bertg4 bench --suite gpu`` (on a CUDA GPU, no network, a few minutes): BERT-base
with random weights at sequence length 128 and batch sizes 1, 8, 32, 128; for every
rung its logits against the fp32 baseline on the same GPU, its latency per batch,
sequences/s and achieved TFLOP/s, next to ``transformers`` BertModel fp16 (sdpa) and
``torch.compile`` of it, measured in the same process. When the embedded MiniLM
weights are present it also checks every rung's numerics on real SST-2 sentences.
``bertg4 bench --suite cpu`` runs the same code at small sizes on a CPU, where the
GPU-only rungs are recorded as not applicable.
"""
from __future__ import annotations

import time

import numpy as np

from . import data as D
from .api import load, tokenizer_for
from .bench import measure_points
from .checkpoint import CheckpointError, add_head, load_checkpoint
from .recipe import NotApplicable, get_recipe, ladder

SUITES = {
    "gpu": dict(device="cuda", model="random:bert_12_768_12", batch_sizes=(1, 8, 32, 128),
                seq_length=128, iters=200, max_seconds=2.0, warmup=10, compile_sizes=(1, 128),
                time_budget_s=240.0, check_rows=256, extra=("sdpa-fp16",), numerics_rows=None),
    "cpu": dict(device="cpu", model="random:bert_12_768_12", batch_sizes=(1, 8), seq_length=32,
                iters=3, max_seconds=2.0, warmup=1, compile_sizes=(), time_budget_s=300.0,
                check_rows=16, extra=("interleaved-fp32", "graph-pass-fp32"), numerics_rows=64),
}


def _eval_texts(n: int) -> tuple[list[str], str]:
    try:
        ts = D.load_sst2("dev")
    except FileNotFoundError:
        ts = D.sample_sst()
    return ts.first[:n], ts.source


def _compare(out: np.ndarray, ref: np.ndarray) -> dict:
    finite = bool(np.isfinite(out).all())
    diff = np.abs(out.astype(np.float64) - ref)
    return {"finite": finite, "max_abs_vs_fp32": float(diff.max()),
            "rel_err_vs_fp32": float(np.linalg.norm(diff) / np.linalg.norm(ref)),
            "argmax_agreement_vs_fp32": float((out.argmax(-1) == ref.argmax(-1)).mean())}


def run_suite(name: str = "gpu", log=print, **overrides) -> list[dict]:
    cfg = dict(SUITES[name], **overrides)
    started = time.perf_counter()
    device, sizes, L = cfg["device"], cfg["batch_sizes"], cfg["seq_length"]
    model = cfg["model"]
    ckpt = model if not isinstance(model, str) else load_checkpoint(model, vocab=cfg.get("vocab"))
    if "classifier.weight" not in ckpt.weights:
        add_head(ckpt, "classifier", 2)
    texts, source = _eval_texts(cfg["check_rows"])
    tok = tokenizer_for(ckpt)
    batch = tok.encode_sentences(texts, seq_len=L)
    common = {"suite": name, "data": source, "examples": len(batch)}
    records = []

    def over_budget():
        return time.perf_counter() - started > cfg["time_budget_s"]

    def time_points(predictor, label, numerics, sizes_here=sizes, first_call=None):
        records.extend(measure_points(predictor, batch, sizes_here, warmup=cfg["warmup"],
                                      iters=cfg["iters"], max_seconds=cfg["max_seconds"], label=label,
                                      first_call=bool(first_call), stop=over_budget, log=log,
                                      **common, **numerics))

    ref = None
    for rung in ladder() + [get_recipe(n) for n in cfg["extra"]]:
        try:
            p = load(task="SST", recipe=rung, device=device, seq_length=L, checkpoint=ckpt)
        except NotApplicable as e:
            records.append({**common, "engine": "pt", "recipe": rung.name, "status": "not applicable",
                            "reason": str(e)})
            log(f"  {rung.name:<22} not applicable: {e}")
            continue
        out = p.infer(batch, 64)
        if ref is None:
            ref = out.astype(np.float64)
        numerics = _compare(out, ref)
        if p.graph_report:
            numerics["graph_pass"] = {k: v for k, v in p.graph_report.items() if "nodes" not in k}
        time_points(p, rung.name, numerics)
        del p

    for label, compiled in (("hf sdpa", False), ("hf sdpa + torch.compile", True)):
        recipe = get_recipe("sdpa-fp16" if device == "cuda" else "sdpa-fp32")
        if compiled and not cfg["compile_sizes"]:
            continue
        p = load(task="SST", engine="hf", recipe=recipe, device=device, seq_length=L, checkpoint=ckpt)
        if compiled:
            import torch
            p.module = torch.compile(p.module, dynamic=False)
        numerics = _compare(p.infer(batch, 64), ref) if not compiled else {}
        time_points(p, f"{label} ({recipe.dtype})", numerics,
                    sizes_here=cfg["compile_sizes"] if compiled else sizes,
                    first_call=True if compiled else None)
        del p

    if cfg.get("numerics", True):
        records += _embedded_numerics(device, name, log, cfg["numerics_rows"])
    log(f"suite {name}: {len(records)} records in {time.perf_counter() - started:.0f} s")
    return records


def _embedded_numerics(device: str, suite: str, log, rows: int | None = None) -> list[dict]:
    """Every rung on the embedded MiniLM over SST-2 dev (its first ``rows`` sentences, or all):
    sentence embeddings against the fp32 baseline's."""
    try:
        ckpt = load_checkpoint("embedded")
    except CheckpointError as e:
        log(f"  embedded model not available ({e}); its numerics were not checked")
        return []
    try:
        ts = D.load_sst2("dev")
    except FileNotFoundError:
        ts = D.sample_sst()
    sentences = ts.first[:rows] if rows else ts.first
    from .explain import compare_recipes
    out_rows = []
    for r in compare_recipes([rung.name for rung in ladder()], sentences, checkpoint=ckpt, device=device):
        if r["status"] != "ok":
            continue
        out_rows.append({"suite": suite, "kind": "numerics", "model": ckpt.config.name, "engine": "pt",
                         "recipe": r["recipe"], "device": device, "device_name": r["device_name"],
                         "data": ts.source, "examples": r["examples"], "finite": r["finite"],
                         "rel_err_vs_fp32": r["rel_error"], "min_cosine_vs_fp32": r["min_cosine"]})
        log(f"  MiniLM {r['recipe']:<20} rel err {r['rel_error']:.2e}, min cosine {r['min_cosine']:.6f}")
    return out_rows


def format_suite(records: list[dict]) -> str:
    """The ladder table: one row per rung/baseline, one column group per batch size."""
    timed = [r for r in records if r.get("status") == "ok"]
    sizes = sorted({r["batch_size"] for r in timed})
    labels = list(dict.fromkeys(r["recipe"] for r in records if "batch_size" in r or
                                r.get("status") == "not applicable"))
    head = "| recipe | " + " | ".join(f"b{b} ms p50 | b{b} seq/s" for b in sizes) + " | rel err vs fp32 |"
    lines = [head, "|---|" + "---:|" * (2 * len(sizes) + 1)]
    for label in labels:
        rows = {r["batch_size"]: r for r in timed if r["recipe"] == label}
        na = next((r for r in records if r["recipe"] == label and r.get("status") == "not applicable"), None)
        if na:
            lines.append(f"| {label} | " + " | ".join("n/a" for _ in range(2 * len(sizes))) + " | n/a |")
            continue
        cells = []
        for b in sizes:
            r = rows.get(b)
            cells += [f"{r['latency_ms_p50']:.3f}", f"{r['sequences_per_s']:.0f}"] if r else ["-", "-"]
        err = next((r.get("rel_err_vs_fp32") for r in rows.values() if "rel_err_vs_fp32" in r), None)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'-' if err is None else f'{err:.1e}'} |")
    numerics = [r for r in records if r.get("kind") == "numerics"]
    if numerics:
        lines += ["", "| MiniLM rung | rel err vs fp32 | min cosine |", "|---|---:|---:|"]
        lines += [f"| {r['recipe']} | {r['rel_err_vs_fp32']:.1e} | {r['min_cosine_vs_fp32']:.6f} |"
                  for r in numerics]
    return "\n".join(lines)


def speedups(records: list[dict], rung: str = "all", baseline: str = "hf sdpa (float16)") -> dict:
    """``rung``'s sequences/s over ``baseline``'s, per batch size measured for both."""
    by = {(r["recipe"], r["batch_size"]): r for r in records if r.get("status") == "ok"}
    return {b: by[(rung, b)]["sequences_per_s"] / by[(baseline, b)]["sequences_per_s"]
            for (name, b) in by if name == rung and (baseline, b) in by}


__all__ = ["SUITES", "run_suite", "format_suite", "speedups"]
