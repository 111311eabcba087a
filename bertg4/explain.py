"""Measured demonstrations behind the notebooks 02-05: each function computes, the notebook
explains and plots.

* :func:`layer_norm_overflow`, :func:`softmax_precision` -- 02_safe_accumulation
* :func:`compare_recipes` -- every notebook: a recipe's outputs against a reference recipe
* :func:`interleaved_rows`, :func:`strided_views` -- 03_interleaved_attention
* :func:`accumulation_error` -- 04_true_fp16 (the CPU emulation, labelled as such)
* :func:`graph_pass_demo`, :func:`mx_graph_pass_demo` -- 05_graph_pass
* :func:`ladder_rows` -- 01_deploy (the ladder as a table of rungs)
* :func:`run_ladder`, :func:`format_speedups` -- 05b_the_ladder (the article's central table)
* :func:`measure_recipes`, :func:`speedup_summary`, :func:`noise_reason`, :func:`median_records`
  -- every speed section: medians over repeats, a spread, a speedup stated only beyond it
* :func:`mx_status`, :func:`mx_switches`, :func:`engines_side_by_side` -- 02, 04, 05: the
  original recipe's engine (mx) beside pt
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .pt import numerics

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504


def _errors(out: torch.Tensor, ref: torch.Tensor) -> dict:
    out, ref = out.double(), ref.double()
    finite = bool(torch.isfinite(out).all())
    err = (out - ref).abs()
    return {"finite": finite, "max_abs_error": float(err.max()) if finite else float("inf"),
            "rel_error": float(err.norm() / ref.norm()) if finite else float("inf")}


def layer_norm_overflow(hidden: int = 768, scale: float = 30.0, rows: int = 8, seed: int = 0) -> dict:
    """LayerNorm over residuals of magnitude ``scale`` (a late BERT layer's residual stream).

    The variance needs the sum of ``hidden`` squares, about ``hidden * scale**2``: past
    65504 it overflows an fp16 accumulator. Returns that sum, and for the fp16 input the
    error of the unsafe (fp16-reducing) and safe (fp32-reducing) LayerNorm against fp32.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=g) * scale
    w, b = torch.rand(hidden, generator=g) + 0.5, torch.randn(hidden, generator=g)
    ref = F.layer_norm(x, (hidden,), w, b, 1e-12)
    x16, w16, b16 = x.half(), w.half(), b.half()
    centred = x - x.mean(-1, keepdim=True)
    return {"hidden": hidden, "scale": scale,
            "sum_of_squares": float((centred ** 2).sum(-1).mean()), "fp16_max": FP16_MAX,
            "unsafe": _errors(numerics.layer_norm(x16, w16, b16, 1e-12, safe=False), ref),
            "safe": _errors(numerics.layer_norm(x16, w16, b16, 1e-12, safe=True), ref)}


def softmax_precision(keys: int = 512, centre: float = 40.0, spread: float = 0.5,
                      rows: int = 64, seed: int = 0) -> dict:
    """Softmax over ``keys`` near-equal scores: its denominator is a long sum of similar terms.

    In fp16 every partial sum is rounded to 11 significant bits, so the denominator --
    and every probability -- drifts; the safe softmax sums in fp32. Errors are relative,
    against the exact (float64) softmax of the same fp16 scores.
    """
    g = torch.Generator().manual_seed(seed)
    s16 = (centre + torch.randn(rows, keys, generator=g) * spread).half()
    ref = torch.softmax(s16.double(), -1)

    def rel(p):
        return float(((p.double() - ref).abs() / ref).max())

    return {"keys": keys, "unsafe_max_rel_error": rel(numerics.softmax(s16, safe=False)),
            "safe_max_rel_error": rel(numerics.softmax(s16, safe=True))}


def compare_recipes(recipes, texts, reference="baseline", model: str = "embedded", task="embedding",
                    engine: str = "pt", device: str = "cpu", seq_length: int = 128, checkpoint=None,
                    batch_size: int = 64) -> list[dict]:
    """Each recipe's outputs on ``texts`` against the ``reference`` recipe's (fp32 baseline).

    One row per recipe: relative and max-abs error, finiteness, and for classification the
    share of arg-max predictions that agree; for embeddings the smallest cosine similarity.
    A recipe that cannot run on ``device`` gives a ``not applicable`` row with the reason.
    """
    from .api import load
    from .checkpoint import load_checkpoint
    from .recipe import NotApplicable, get_recipe
    ckpt = checkpoint or load_checkpoint(model)
    ref_p = load(task=task, engine=engine, recipe=reference, device=device, seq_length=seq_length,
                 checkpoint=ckpt)
    batch = ref_p.featurize(texts)
    ref = ref_p.infer(batch, batch_size, padding="fixed").astype(np.float64)
    rows = []
    for recipe in recipes:
        recipe = get_recipe(recipe)
        row = {"recipe": recipe.name, "dtype": recipe.dtype, "engine": engine, "device": device,
               "examples": len(batch), "reference": get_recipe(reference).name}
        try:
            p = load(task=task, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                     checkpoint=ckpt)
        except NotApplicable as e:
            rows.append({**row, "status": "not applicable", "reason": str(e)})
            continue
        out = p.infer(batch, batch_size, padding="fixed").astype(np.float64)
        finite = bool(np.isfinite(out).all())
        diff = np.abs(out - ref)
        row.update(status="ok", device_name=p.device_name(), finite=finite, max_abs_error=float(diff.max()),
                   rel_error=float(np.linalg.norm(diff) / np.linalg.norm(ref)))
        if p.task.kind == "classification":
            row["agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
        if p.task.kind == "embedding":
            cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
            row["min_cosine"] = float(cos.min())
        rows.append(row)
    return rows


def interleaved_rows(heads: int, head_dim: int) -> list[tuple[str, int, int]]:
    """Which projection row each row of the fused QKV weight comes from: ``(q|k|v, head, j)``,
    where the source row is ``head * head_dim + j`` of that projection."""
    from .checkpoint import interleave_qkv
    hidden = heads * head_dim
    idx = np.arange(hidden)
    tagged = interleave_qkv(idx + 0 * hidden, idx + 1 * hidden, idx + 2 * hidden, heads)
    return [("qkv"[t // hidden], (t % hidden) // head_dim, t % head_dim) for t in tagged.tolist()]


def strided_views(seq: int, batch: int, heads: int, head_dim: int) -> dict:
    """Shape, strides and storage offset of the Q, K and V views over one projected tensor
    ``(seq, batch, heads*3*head_dim)``; all three share its storage (no copies)."""
    from .pt.attention import _head_view
    proj = torch.zeros(seq, batch, 3 * heads * head_dim)
    out = {"projected": {"shape": tuple(proj.shape), "strides": proj.stride()}}
    for i, name in enumerate("QKV"):
        v = _head_view(proj, heads, i)
        out[name] = {"shape": tuple(v.shape), "strides": v.stride(), "offset": v.storage_offset(),
                     "shares_storage": v.untyped_storage().data_ptr() == proj.untyped_storage().data_ptr()}
    return out


def accumulation_error(ks=(64, 256, 1024, 4096), rows: int = 16, chunk: int = 1, seed: int = 0) -> list[dict]:
    """GEMM error against float64 for fp16 inputs, accumulated in fp32 (real) or in fp16
    (EMULATED on this device by :func:`bertg4.pt.numerics.emulated_fp16_matmul`).

    Inputs are positive (uniform in [0, 1)), the worst case for an fp16 accumulator: the
    partial sums grow with the inner dimension ``k`` and lose low bits at every addition.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in ks:
        a, b = torch.rand(rows, k, generator=g).half(), torch.rand(k, rows, generator=g).half()
        exact = a.double() @ b.double()
        fp32 = a.float() @ b.float()
        emulated = numerics.emulated_fp16_matmul(a, b, chunk=chunk)
        out.append({"k": int(k), "fp32_accumulate_rel_error": float(((fp32 - exact).abs() / exact).max()),
                    "fp16_accumulate_rel_error_emulated": float(((emulated - exact).abs() / exact).max()),
                    "emulation_chunk": chunk})
    return out


def graph_pass_demo(checkpoint, texts, task="SST", seq_length: int = 128, device: str = "cpu") -> dict:
    """Build the fp32 interleaved model with and without the graph pass; return the pass's
    report (node counts before/after), its outputs' largest difference (and their largest
    magnitude, the scale fp32 rounding follows), and the generated
    code of the first encoder layer's attention before and after."""
    from .api import load
    before = load(task=task, recipe="interleaved-fp32", checkpoint=checkpoint, device=device,
                  seq_length=seq_length)
    after = load(task=task, recipe="graph-pass-fp32", checkpoint=checkpoint, device=device,
                 seq_length=seq_length)
    batch = before.featurize(texts)
    ref = before.infer(batch, padding="fixed")
    diff = float(np.abs(ref - after.infer(batch, padding="fixed")).max())
    from .pt import graph_pass
    again, second = graph_pass.apply(after.module)
    return {"report": after.graph_report, "max_abs_difference": diff,
            "max_abs_output": float(np.abs(ref).max()), "second_pass": {k: second[k] for k in ("bias_gelu_fused", "qkv_prearranged")},
            "before": before, "after": after}


def bias_gelu_ops(rows: int = 8, hidden: int = 64) -> list[str]:
    """The operators eager PyTorch runs for the graph pass's ``bias_gelu`` (one node in the
    graph), as ``torch.profiler`` records them: the pass moves the bias next to GELU; fusing
    the two into one kernel is a compiler's job."""
    from torch.profiler import profile
    from .pt.graph_pass import bias_gelu
    x, b = torch.randn(rows, hidden), torch.randn(hidden)
    with profile() as prof:
        bias_gelu(x, b)
    return [e.name for e in prof.events() if e.name.startswith("aten::")]


def mx_graph_pass_demo(checkpoint, texts, task="SST", seq_length: int = 128) -> dict:
    """The MXNet engine's pass (:mod:`bertg4.mx.graph_pass`) on the same model: the report
    (operators before/after), the outputs' largest difference, and layer 0's joint QKV bias
    as the rewritten parameters hold it (for :func:`qkv_slots`). Needs the ``mxnet`` extra."""
    import json
    import os
    from .api import load
    from .mx.compat import import_mxnet
    mx, _ = import_mxnet()
    before = load(task=task, engine="mx", recipe="interleaved-fp32", checkpoint=checkpoint,
                  seq_length=seq_length)
    after = load(task=task, engine="mx", recipe="graph-pass-fp32", checkpoint=checkpoint,
                 seq_length=seq_length)
    batch = before.featurize(texts)
    ref = before.infer(batch, padding="fixed")
    diff = float(np.abs(ref - after.infer(batch, padding="fixed")).max())
    with open(os.path.join(after.exported, "model-symbol.json"), encoding="utf-8") as f:
        graph = json.load(f)
    params = mx.nd.load(os.path.join(after.exported, "model-0000.params"))
    cell = [n["name"] for n in graph["nodes"] if n["name"].endswith("qkv_bias")][0]
    return {"report": after.graph_report, "max_abs_difference": diff,
            "max_abs_output": float(np.abs(ref).max()), "qkv_bias_layer0": params["arg:" + cell].asnumpy(), "before": before, "after": after}


def amplify_residuals(checkpoint, factor: float = 30.0):
    """A copy of ``checkpoint`` whose feed-forward outputs are ``factor`` times larger.

    Each layer's FFN output (``output.dense``) is scaled, so the residual sum that the
    layer's last LayerNorm reduces reaches magnitude ~``factor`` -- the large activations
    some trained models carry in a few features. The LayerNorm rescales them before any
    GEMM sees them, so only its reductions meet the large values. The original is unchanged.
    """
    from .checkpoint import Checkpoint
    w = dict(checkpoint.weights)
    for i in range(checkpoint.config.num_layers):
        for leaf in ("weight", "bias"):
            name = f"encoder.layer.{i}.output.dense.{leaf}"
            w[name] = w[name] * np.float32(factor)
    return Checkpoint(checkpoint.config, w, checkpoint.vocab, source=f"{checkpoint.source} "
                      f"(FFN outputs x{factor:g})", notes=list(checkpoint.notes),
                      do_lower_case=checkpoint.do_lower_case)


def layer_code(module, layer: int = 0) -> str:
    """The lines of a ``torch.fx`` module's generated code that compute encoder layer ``layer``."""
    lines = module.code.splitlines()
    mark, following = f'layers, "{layer}")', f'layers, "{layer + 1}")'
    start = next(i for i, s in enumerate(lines) if mark in s)
    end = next((i for i, s in enumerate(lines) if following in s), len(lines))
    return "\n".join(s.strip() for s in lines[start:end])


def qkv_slots(module, checkpoint, layer: int = 0) -> dict:
    """Where the prearranged QKV bias of ``layer`` took each slot from: for every slot kind
    (q, k, v) the largest difference to each checkpoint bias (query, key, value). A correct
    pass has zeros on the diagonal only."""
    if isinstance(module, np.ndarray):  # the joint bias itself (e.g. from the MXNet pass)
        fused = module
    else:
        fused = module.get_submodule(f"bert.layers.{layer}.attn").qkv_bias.detach().float().cpu().numpy()
    heads = checkpoint.config.num_heads
    rows = interleaved_rows(heads, checkpoint.config.hidden_size // heads)
    prefix = f"encoder.layer.{layer}.attention.self"
    out = {}
    for slot in "qkv":
        idx = [i for i, (w, _, _) in enumerate(rows) if w == slot]
        src = [h * (len(rows) // (3 * heads)) + j for w, h, j in rows if w == slot]
        out[slot] = {name: float(np.abs(fused[idx] - checkpoint.weights[f"{prefix}.{name}.bias"][src]).max())
                     for name in ("query", "key", "value")}
    return out


# --- the ladder, measured as a table (05b_the_ladder; 01 introduces it) ---------------------

#: what each switch of :class:`bertg4.recipe.Recipe` does, and the original recipe's counterpart
#: (per value where the two values differ in kind)
SWITCHES = {
    "dtype": ("weights and activations in {value}", "net.cast('{value}')"),
    "safe_accumulation": {True: ("softmax and LayerNorm reduce in fp32", "MXNET_SAFE_ACCUMULATION=1"),
                          False: ("softmax and LayerNorm reduce in fp16", "MXNET_SAFE_ACCUMULATION=0")},
    "attention": ("{value} attention: one fused QKV GEMM, strided batched GEMMs",
                  "interleaved_matmul_selfatt_qk / _valatt"),
    "true_fp16": ("every cuBLAS fp16 GEMM accumulates in fp16",
                  "MXNET_FC_TRUE_FP16=1 (FullyConnected only)"),
    "graph_pass": ("export-time pass: FFN bias moved next to GELU, QKV weights prearranged",
                   "the AddBiasGelu and MHAInterleave passes (optimize_for)"),
    "cuda_graphs": ("whole forward captured and replayed as one CUDA graph per shape",
                    "none (beyond the article)"),
    "int8": ("INT8 GEMMs", "oneDNN quantization"),
    "compile": ("torch.compile (inductor) of the model", "none (beyond the article)"),
    "onednn": ("every Linear on oneDNN, weights prepacked once, bias+GELU inside the kernel; "
               "attention's float32 GEMMs on oneDNN where it computes them in float32",
               "none (beyond the article; MXNet's CPU FullyConnected runs on oneDNN)"),
}


def ladder_rows() -> list[dict]:
    """The ladder as a table, computed from :func:`bertg4.recipe.ladder`: for each rung the
    switches it changes against the rung before (with their meaning and the original MXNet
    recipe's counterpart), and whether the PyTorch engine can run it on a CPU (its reason
    when not)."""
    from .pt.engine import check_applicable
    from .recipe import NotApplicable, ladder
    rows, previous = [], None
    for rung in ladder():
        now = rung.to_dict()
        changed = ({k: v for k, v in now.items() if k != "name" and previous[k] != v}
                   if previous else {})
        what, mx = [], []
        for field, value in changed.items():
            entry = SWITCHES[field]
            meaning, counterpart = entry[value] if isinstance(entry, dict) else entry
            what.append(meaning.format(value=value))
            mx.append(counterpart.format(value=value))
        try:
            check_applicable(rung, torch.device("cpu"))
            cpu = "yes"
        except NotApplicable as e:
            cpu = (f"GPU only (builds on {rows[-1]['rung']})" if rows[-1]["on_cpu"] != "yes" else
                   "GPU only: " + str(e).split(": ", 1)[-1].split(";")[0])
        rows.append({"rung": rung.name, "changes": changed, "adds": "; ".join(what) or "fp32, naive attention",
                     "mxnet": "; ".join(mx) or "fp32 GluonNLP BERT", "dtype": rung.dtype,
                     "on_cpu": cpu, "recipe": now})
        previous = now
    return rows


def markdown_table(rows: list[dict], columns: dict) -> str:
    """``rows`` as a Markdown table; ``columns`` maps each row key to its header."""
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(k, "")).replace("|", "/") for k in columns) + " |" for r in rows]
    return "\n".join(lines)


def emulation_reason(engine: str, recipe) -> str | None:
    """Why a recipe's timing is not a kernel's speed on ``engine``, or None when it is.

    The ``pt`` engine writes the unsafe fp16 reductions (``safe_accumulation=False``) out of
    fp16 element-wise operations so that their numerics are real (see
    :mod:`bertg4.pt.numerics`); their speed is that of the emulation, on any device. MXNet's
    ``MXNET_SAFE_ACCUMULATION=0`` runs real kernels, so the ``mx`` engine's fp16 rung is timed.
    """
    from .recipe import get_recipe
    recipe = get_recipe(recipe)
    if engine in ("pt", "hf") and recipe.dtype == "float16" and not recipe.safe_accumulation:
        return (f"on the {engine} engine the unsafe fp16 softmax/LayerNorm are an element-by-element "
                "emulation (fp16 partial sums, to make the numerics real), not a kernel: its time is kept "
                "out of the speed comparison")
    return None


def measure_recipes(recipes, texts, batch_sizes, repeats: int = 3, engine: str = "pt",
                    device: str = "cpu", seq_length: int = 128, model: str = "embedded",
                    task="SST", checkpoint=None, iters: int = 20, warmup: int = 3,
                    max_seconds: float | None = None, log=None) -> list[dict]:
    """Time every recipe at every batch size ``repeats`` times: each predictor is built once,
    then every repeat times them all in turn (:func:`bertg4.bench.sweep_batch_sizes`), so a
    slow drift of the machine spreads over every recipe instead of favouring one.

    Timed records carry ``repeat`` (0-based). A recipe the device cannot honour gives one
    ``not applicable`` record (its reason); one whose timing would be an emulation
    (:func:`emulation_reason`) gives one ``status: "emulation"`` record and is not timed.
    Records come in the order of ``recipes``.
    """
    from .api import load
    from .bench import sweep_batch_sizes
    from .checkpoint import load_checkpoint
    from .recipe import NotApplicable, get_recipe
    if repeats < 1:
        raise ValueError(f"need repeats >= 1, got {repeats}")
    ckpt = checkpoint or load_checkpoint(model)
    recipes = [get_recipe(r) for r in recipes]
    untimed, predictors = {}, {}
    for recipe in recipes:
        base = {"engine": engine, "recipe": recipe.name, "dtype": recipe.dtype, "device": device,
                "model": ckpt.config.name, "seq_length": seq_length}
        why = emulation_reason(engine, recipe)
        if why:
            untimed[recipe.name] = {**base, "status": "emulation", "reason": why}
            continue
        try:
            p = load(task=task, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                     checkpoint=ckpt)
        except NotApplicable as e:
            untimed[recipe.name] = {**base, "status": "not applicable", "reason": str(e)}
            continue
        predictors[recipe.name] = (p, p.featurize(texts))
    timed = {name: [] for name in predictors}
    for repeat in range(repeats):
        for name, (p, batch) in predictors.items():
            if log:
                log(f"repeat {repeat + 1}/{repeats}: {engine} {name}")
            timed[name] += sweep_batch_sizes(p, batch, batch_sizes, warmup=warmup, iters=iters,
                                             max_seconds=max_seconds, progress=False,
                                             repeat=repeat, examples=len(batch), of=len(batch))
    predictors.clear()
    records = []
    for recipe in recipes:
        records += [untimed[recipe.name]] if recipe.name in untimed else timed[recipe.name]
    return records


def run_ladder(device: str = "cpu", batch_sizes=(1, 2), seq_length: int = 128, repeats: int = 3,
               iters: int = 3, warmup: int = 1, model: str = "random:bert_12_768_12", texts=None,
               engine: str = "pt", extra=(), max_seconds: float | None = None, log=None) -> list[dict]:
    """The article's central table, measured: every rung of :func:`bertg4.recipe.ladder` (then
    the ``extra`` recipes) on BERT-base with random weights at ``seq_length``, over
    ``batch_sizes``, ``repeats`` times (:func:`measure_recipes`), on SST-2 dev sentences padded
    to the fixed sequence length, as the article measured."""
    from .recipe import ladder
    if texts is None:
        from .data import load_sst2
        texts = load_sst2("dev").first[:max(64, max(batch_sizes))]
    return measure_recipes([r.name for r in ladder()] + list(extra), texts, batch_sizes, repeats=repeats,
                           engine=engine, device=device, seq_length=seq_length, model=model, iters=iters,
                           warmup=warmup, max_seconds=max_seconds, log=log)


def speedup_summary(records_a: list[dict], records_b: list[dict]) -> dict:
    """How much faster ``b`` runs than ``a`` at one batch size (one or more repeats each).

    ``ratio`` is the median p50 latency of ``a`` over that of ``b`` (> 1: ``b`` is faster).
    The spread (``low``, ``high``) covers both kinds of noise: the iterations' (``a``'s
    fastest over ``b``'s p90 up to ``a``'s p90 over ``b``'s fastest, over all repeats: the
    band :func:`bertg4.plots.recipe_speedup` draws) and, with two or more repeats, the range
    of the per-repeat ratios (paired by ``repeat``). ``significant`` is true only when the
    whole spread lies on one side of 1; ``text`` says it in words, and a speedup is stated
    only then.
    """
    a = [r for r in records_a if r.get("status", "ok") == "ok"]
    b = [r for r in records_b if r.get("status", "ok") == "ok"]
    if not a or not b:
        raise ValueError("speedup_summary needs at least one timed record on each side")
    sizes = {r["batch_size"] for r in a + b}
    if len(sizes) != 1:
        raise ValueError(f"speedup_summary compares one batch size, got {sorted(sizes)}")

    def fastest(r):
        return r.get("latency_ms_min", r["latency_ms_p50"])

    ratio = float(np.median([r["latency_ms_p50"] for r in a]) / np.median([r["latency_ms_p50"] for r in b]))
    low = min(fastest(r) for r in a) / max(r["latency_ms_p90"] for r in b)
    high = max(r["latency_ms_p90"] for r in a) / min(fastest(r) for r in b)
    pa = {r["repeat"]: r["latency_ms_p50"] for r in a if "repeat" in r}
    pb = {r["repeat"]: r["latency_ms_p50"] for r in b if "repeat" in r}
    paired = sorted(set(pa) & set(pb))
    if len(paired) >= 2:
        ratios = [pa[i] / pb[i] for i in paired]
        low, high = min(low, *ratios), max(high, *ratios)
    iters = sorted({r.get("iterations") for r in a + b if r.get("iterations")})
    basis = (f"{max(len(paired), 1)} repeat(s) of " + (f"{iters[0]}" if len(iters) == 1 else
             f"{iters[0]}-{iters[-1]}") + " timed iterations")
    significant = low > 1.0 or high < 1.0
    if significant:
        word = "faster" if ratio > 1 else "slower"
        text = f"{ratio:.2f}x ({word}; spread {low:.2f}-{high:.2f}x over {basis})"
    else:
        text = f"no difference shown ({ratio:.2f}x, inside the spread {low:.2f}-{high:.2f}x over {basis})"
    return {"batch_size": sizes.pop(), "ratio": ratio, "low": low, "high": high,
            "significant": significant, "basis": basis, "text": text}


def speedup_rows(records: list[dict], baseline: str = "baseline") -> list[dict]:
    """One row per recipe: its :func:`speedup_summary` over ``baseline`` at every batch size
    both measured (``speedups``: batch size -> summary), or its status and reason when it
    was not timed (not applicable, emulation)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not any(r["recipe"] == baseline for r in ok):
        raise ValueError(f"no timed records of the baseline {baseline!r}")
    runs = {(r["engine"], r.get("device_name"), r["seq_length"]) for r in ok}
    if len(runs) > 1:
        raise ValueError("speedups compare recipes of one engine, device and sequence length; got "
                         f"{sorted(map(str, runs))}")
    rows = []
    for name in dict.fromkeys(r["recipe"] for r in records):
        mine = [r for r in ok if r["recipe"] == name]
        if not mine:
            first = next(r for r in records if r["recipe"] == name)
            rows.append({"recipe": name, "status": first.get("status"), "reason": first.get("reason", "")})
            continue
        sp = {}
        for b in sorted({r["batch_size"] for r in mine}):
            base = [r for r in ok if r["recipe"] == baseline and r["batch_size"] == b]
            if base:
                sp[b] = speedup_summary(base, [r for r in mine if r["batch_size"] == b])
        rows.append({"recipe": name, "status": "ok", "speedups": sp,
                     "latency_ms_p50": {b: float(np.median([r["latency_ms_p50"] for r in mine
                                                            if r["batch_size"] == b])) for b in sp}})
    return rows


def format_speedups(records: list[dict], baseline: str = "baseline") -> str:
    """The speedup table in Markdown: one row per recipe, one column per batch size; a
    speedup inside its spread is written ``~`` (no difference shown); recipes that were not
    timed say why, below the table."""
    rows = speedup_rows(records, baseline)
    sizes = sorted({b for r in rows if r["status"] == "ok" for b in r["speedups"]})
    lines = ["| rung | " + " | ".join(f"batch {b}" for b in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    notes = []
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['recipe']} | " + " | ".join(r["status"] for _ in sizes) + " |")
            notes.append(f"- {r['recipe']}: {r['status']} -- {r['reason']}")
            continue
        if r["recipe"] == baseline:
            lines.append(f"| {baseline} | " + " | ".join("1 (reference)" for _ in sizes) + " |")
            continue
        cells = []
        for b in sizes:
            s = r["speedups"].get(b)
            cells.append("-" if s is None else f"{s['ratio']:.2f}x" + ("" if s["significant"] else " ~")
                         + f" ({s['low']:.2f}-{s['high']:.2f})")
        lines.append(f"| {r['recipe']} | " + " | ".join(cells) + " |")
    ok = [r for r in records if r.get("status") == "ok"]
    r0 = ok[0]
    repeats = len({r.get("repeat") for r in ok})
    head = (f"Speedup over {baseline}: ratio of median p50 latencies per batch; in brackets the spread "
            f"over {repeats} repeat(s) and their iterations (fastest to p90); ~ = inside the spread, no "
            f"difference shown | {r0['model']} | {r0['engine']} | seq {r0['seq_length']} | "
            f"measured on {r0['device_name']}")
    return "\n".join([head, ""] + lines + ([""] + notes if notes else []))


def speedup_lines(records: list[dict], baseline: str = "baseline") -> list[str]:
    """The speedups of :func:`speedup_rows` in words, one line per recipe and batch size (a
    speedup is stated only beyond its spread), and one per recipe that was not timed, with
    the reason."""
    lines = []
    for row in speedup_rows(records, baseline):
        if row["status"] != "ok":
            lines.append(f"{row['recipe']}: {row['status']} ({row['reason']})")
        elif row["recipe"] != baseline:
            lines += [f"{row['recipe']} over {baseline}, batch {b}: {s['text']}" for b, s in row["speedups"].items()]
    return lines


def median_records(records: list[dict]) -> list[dict]:
    """One record per (engine, recipe, batch size, sequence length) for figures and sliders
    that read one record per point: the median over repeats of p50 latency and sequences/s;
    ``latency_ms_min``/``latency_ms_p90`` the fastest and slowest of the repeats' (so a drawn
    band covers every repeat); ``repeats``. Untimed records pass through unchanged."""
    groups = {}  # in the order of first appearance; an untimed record is a group of its own
    for i, r in enumerate(records):
        key = (r["engine"], r["recipe"], r["batch_size"], r["seq_length"]) if r.get("status", "ok") == "ok" else i
        groups.setdefault(key, []).append(r)
    out = []
    for key, rows in groups.items():
        if isinstance(key, int):
            out.append(rows[0])
            continue
        p50 = float(np.median([r["latency_ms_p50"] for r in rows]))
        m = {k: v for k, v in rows[0].items() if k != "repeat"}
        m.update(latency_ms_p50=p50, repeats=len(rows), latency_ms_per_sequence=p50 / rows[0]["batch_size"],
                 latency_ms_min=min(r.get("latency_ms_min", r["latency_ms_p50"]) for r in rows),
                 latency_ms_p90=max(r["latency_ms_p90"] for r in rows),
                 sequences_per_s=float(np.median([r["sequences_per_s"] for r in rows])))
        out.append(m)
    return out


def noise_reason(records: list[dict], smoke: bool = False) -> str | None:
    """Why these timings are noise, or None: :func:`bertg4.plots.noise_reason` (smoke sizes,
    too few iterations, a wide spread) and a CPU, whose cores other processes share."""
    from .plots import noise_reason as spread_reason
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    why = [spread_reason(ok, smoke=smoke)] if ok else (["smoke sizes"] if smoke else [])
    if any(r.get("device") == "cpu" for r in ok):
        why.append("a CPU shared with other processes")
    why = [w for w in why if w]
    return "; ".join(why) or None


# --- the original recipe's engine (mx) beside pt ---------------------------------------------

def mx_status(device: str = "cpu") -> dict:
    """Can the ``mx`` engine run on ``device`` here? ``{"ok", "reason"}``: the reason says
    what is missing and how to get it (the ``mxnet-cu102`` extra and ``environment.yml`` for a
    G4's GPU)."""
    from .mx import MXNetUnavailable, import_mxnet
    try:
        mx, _ = import_mxnet()
    except MXNetUnavailable as e:
        return {"ok": False, "reason": str(e)}
    if device.startswith("cuda"):
        gpus = mx.context.num_gpus()
        if gpus == 0:
            return {"ok": False, "reason": f"MXNet {mx.__version__} sees no GPU (a CPU build, or no "
                    "CUDA device): on a G4 instance `conda env create -f environment.yml` installs "
                    "mxnet-cu102 with CUDA 10.2's libraries"}
        return {"ok": True, "reason": f"MXNet {mx.__version__} sees {gpus} GPU(s)"}
    return {"ok": True, "reason": f"MXNet {mx.__version__} on the CPU: fp32 rungs only"}


def mx_switches(recipe) -> dict:
    """The MXNet environment switches a recipe sets, as seen before, inside and after the
    mx engine's scope (:func:`bertg4.mx.engine.mxnet_env`): set for the call, then restored."""
    import os
    from .mx.engine import mxnet_env
    from .recipe import get_recipe
    names = ("MXNET_SAFE_ACCUMULATION", "MXNET_FC_TRUE_FP16")
    before = {n: os.environ.get(n) for n in names}
    with mxnet_env(get_recipe(recipe)):
        inside = {n: os.environ.get(n) for n in names}
    return {"before": before, "inside": inside, "after": {n: os.environ.get(n) for n in names}}


def engines_side_by_side(recipes, texts, batch_sizes, device: str, engines=("pt", "mx"), repeats: int = 3,
                         model: str = "embedded", seq_length: int = 128, iters: int = 20, warmup: int = 3,
                         task="SST") -> list[dict]:
    """:func:`measure_recipes` for each engine, each in a fresh process one after the other
    (:func:`bertg4.bench.in_fresh_process`: MXNet's and PyTorch's thread pools slow each other
    down in one process). A recipe an engine cannot run gives its not-applicable record."""
    from .bench import in_fresh_process
    out = []
    for engine in engines:
        out += in_fresh_process(measure_recipes, list(recipes), list(texts), list(batch_sizes),
                                repeats=repeats, engine=engine, device=device, seq_length=seq_length,
                                model=model, task=task, iters=iters, warmup=warmup)
    return out
