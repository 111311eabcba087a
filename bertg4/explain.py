"""Measured demonstrations behind the notebooks 02-05: each function computes, the notebook
explains and plots.

* :func:`layer_norm_overflow`, :func:`softmax_precision` -- 02_safe_accumulation
* :func:`compare_recipes` -- every notebook: a recipe's outputs against a reference recipe
* :func:`interleaved_rows`, :func:`strided_views` -- 03_interleaved_attention
* :func:`accumulation_error` -- 04_true_fp16 (the CPU emulation, labelled as such)
* :func:`graph_pass_demo` -- 05_graph_pass
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
    ref = ref_p.infer(batch, batch_size).astype(np.float64)
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
        out = p.infer(batch, batch_size).astype(np.float64)
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
    report (node counts before/after), its outputs' largest difference, and the generated
    code of the first encoder layer's attention before and after."""
    from .api import load
    before = load(task=task, recipe="interleaved-fp32", checkpoint=checkpoint, device=device,
                  seq_length=seq_length)
    after = load(task=task, recipe="graph-pass-fp32", checkpoint=checkpoint, device=device,
                 seq_length=seq_length)
    batch = before.featurize(texts)
    diff = float(np.abs(before.infer(batch) - after.infer(batch)).max())
    from .pt import graph_pass
    again, second = graph_pass.apply(after.module)
    return {"report": after.graph_report, "max_abs_difference": diff,
            "second_pass": {k: second[k] for k in ("bias_gelu_fused", "qkv_prearranged")},
            "before": before, "after": after}


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
    diff = float(np.abs(before.infer(batch) - after.infer(batch)).max())
    with open(os.path.join(after.exported, "model-symbol.json"), encoding="utf-8") as f:
        graph = json.load(f)
    params = mx.nd.load(os.path.join(after.exported, "model-0000.params"))
    cell = [n["name"] for n in graph["nodes"] if n["name"].endswith("qkv_bias")][0]
    return {"report": after.graph_report, "max_abs_difference": diff,
            "qkv_bias_layer0": params["arg:" + cell].asnumpy(), "before": before, "after": after}


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
