"""oneDNN Linear layers with weights prepacked once, for float32 on a CPU.

PyTorch's ``F.linear`` on a CPU reorders nothing in advance: each call hands the weight, in
its plain row-major layout, to the BLAS. oneDNN can instead take a weight reordered once
into its own blocked layout (``torch.ops.mkldnn._reorder_linear_weight``) and run
``torch.ops.mkldnn._linear_pointwise``, which also applies an elementwise op to the output
in the same kernel. This pass, applied after :mod:`bertg4.pt.graph_pass` (which has already
split the FFN's bias from its first Linear and prearranged the interleaved QKV weight):

1. every ``bias_gelu(F.linear(x, W), b)`` becomes one prepacked Linear with bias and exact
   (erf) GELU fused: the CPU form of the original's ``AddBiasGelu``;
2. every other Linear (module call or ``F.linear`` on a stored weight: the fused QKV
   projection, the attention output, the FFN's second Linear, pooler and task head)
   becomes a prepacked Linear.

It is what inductor's ``freezing`` does to Linear layers, without compiling the rest of the
graph. A predictor of these rungs runs attention's two batched GEMMs on oneDNN too, under a
PyTorch setting that also reaches these float32 Linears, where a probe of the forward's calls
finds that oneDNN computes them in float32 (:mod:`bertg4.pt.matmul`). The prepacked weights are opaque oneDNN tensors of the running process: the model
is rebuilt from its checkpoint, never exported in this form.

**INT8** (``onednn-int8``): the same rewrite onto oneDNN's INT8 Linear
(``torch.ops.onednn.qlinear_pointwise``), the kernel inductor lowers PyTorch's x86 INT8 to.
Weights are int8 with one scale per output channel (symmetric, the scale PyTorch's dynamic
quantization takes; :func:`quantize_weight`), reordered once by ``torch.ops.onednn.qlinear_prepack``; each call
quantizes its input to uint8 with one scale and zero point for the whole tensor, computed from
that input (dynamic quantization, as ``int8`` and ONNX Runtime's dynamic INT8 do), and gets
float32 out with the bias, and for the FFN's first Linear the GELU, applied in the kernel. The
fused QKV projection quantizes its input once for all three. :func:`input_outliers` measures
each Linear's input on calibration sentences; the one with the strongest outlier channel stays
float32 (prepacked) by :func:`bertg4.pt.quantize.keep_float`'s rule.

Measured against ``int8`` (PyTorch's FBGEMM dynamic Linear on the model without the graph
pass), BERT-base seq 128, 2 cores with VNNI: bias+GELU inside the kernel, one quantization for
Q, K and V, and an input quantization in one pass (``aminmax``, then one quantizing copy;
``quantize_per_tensor_dynamic`` reads the tensor twice and ``int_repr`` copies it again) are
where its time goes down.
"""
from __future__ import annotations

import collections
import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .graph_pass import _fetch, bias_gelu
from .quantize import channel_amax, outlier_ratio


def available(int8: bool = False) -> bool:
    """Whether this torch has oneDNN (mkldnn) and its prepacked Linear ops (``int8``: and its
    INT8 Linear)."""
    ok = bool(torch.backends.mkldnn.is_available()) and \
        hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    if ok and int8:
        try:
            ok = hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack")
        except (AttributeError, RuntimeError):
            ok = False
    return ok


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def linear_gelu(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GELU(x W^T + b) in one oneDNN kernel (exact, erf-based GELU, as BERT's)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none")


_TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def quantize_input(x: torch.Tensor, qmax: int = 255) -> tuple[torch.Tensor, float, int]:
    """A 2-D float32 tensor as uint8 codes ``0..qmax``, one scale and zero point for the whole
    tensor (its range, widened to hold 0): ``(codes, scale, zero_point)``. ``qmax`` 127 keeps the
    sums of two 8-bit products inside 16 bits on CPUs without VNNI. A non-finite input is an
    error: one ``inf`` or ``nan`` would leave the whole tensor without a usable scale."""
    lo, hi = torch.aminmax(x)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"INT8 Linear: its input holds non-finite values (range {lo} .. {hi})")
    scale = (hi - lo) / qmax
    if not scale >= _TINY:  # all zero, or a range too small for a float32 scale to divide by
        scale = 1.0
    zero = int(min(qmax, max(0, round(-lo / scale))))
    q = torch.quantize_per_tensor(x, scale, zero, torch.quint8)
    # the codes as a plain uint8 tensor on the same memory (int_repr() would copy them)
    codes = torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.size(), q.stride())
    if qmax < 255:  # rounding can put the top of the range one code past qmax
        codes.clamp_(max=qmax)
    return codes, scale, zero


def _qlinear(x, packed, w_scale, w_zero, bias, qmax, post, algorithm):
    shape = x.shape
    q, scale, zero = quantize_input(x.reshape(-1, shape[-1]).contiguous(), qmax)
    y = torch.ops.onednn.qlinear_pointwise(q, scale, zero, packed, w_scale, w_zero, bias, 1.0, 0,
                                           torch.float32, post, [], algorithm)
    return y.view(*shape[:-1], y.shape[-1])


def qlinear(x, packed, w_scale, w_zero, bias, qmax: int = 255):
    """``x W^T + b`` on oneDNN's INT8 Linear, ``x`` quantized per call (:func:`quantize_input`)."""
    return _qlinear(x, packed, w_scale, w_zero, bias, qmax, "none", "")


def qlinear_gelu(x, packed, w_scale, w_zero, bias, qmax: int = 255):
    """GELU(x W^T + b) on oneDNN's INT8 Linear, the exact (erf) GELU inside the kernel."""
    return _qlinear(x, packed, w_scale, w_zero, bias, qmax, "gelu", "none")


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 codes, one symmetric scale per output channel and zero points (all 0). The scale is
    PyTorch's per-channel symmetric observer's (``amax / 127.5``); the codes round ``w / scale``,
    where PyTorch's quantizer multiplies by ``1 / scale``, so a code whose ``w / scale`` sits
    next to a half can land one step from ``int8``'s."""
    w = weight.detach().float()
    scale = (w.abs().amax(1) / 127.5).clamp(min=torch.finfo(torch.float32).eps)
    codes = torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8)
    return codes, scale, torch.zeros(w.shape[0], dtype=torch.int64)


def _pack(gm: torch.fx.GraphModule, name: str, weight: torch.Tensor, cache: dict, int8: bool = False) -> list:
    """``get_attr`` nodes of ``weight`` prepacked: float32 (one node), or int8 codes, scales and
    zero points (:func:`quantize_weight`). ``cache`` (by tensor) packs a
    weight shared by several graphs (the padded and the packed model) or Linears once."""
    key = (id(weight), int8)
    if key not in cache:
        if int8:
            codes, scale, zero = quantize_weight(weight)
            cache[key] = (torch.ops.onednn.qlinear_prepack(codes, None), scale, zero)
        else:
            cache[key] = (torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous().float()),)
    base = name.replace(".", "_")
    nodes = []
    for prefix, t in zip(("onednn_w_", "onednn_s_", "onednn_z_"), cache[key]):
        if not hasattr(gm, prefix + base):
            gm.register_buffer(prefix + base, t, persistent=False)
        nodes.append(gm.graph.get_attr(prefix + base))
    return nodes


def _const(gm: torch.fx.GraphModule, node) -> torch.Tensor | None:
    if isinstance(node, torch.fx.Node) and node.op == "get_attr":
        return _fetch(gm, node.target)
    return None


def _linears(gm: torch.fx.GraphModule):
    """Each Linear of the graph as ``(node, weight name, weight, bias, gelu node)`` (its input is
    ``node.args[0]``; bias: a node, or a module's bias by name):
    ``bias_gelu(F.linear(x, W), b)`` (gelu node: the ``bias_gelu``), ``F.linear(x, W[, b])`` on
    stored tensors, and ``nn.Linear`` module calls."""
    out = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.linear:
            args = list(node.args) + [node.kwargs.get("bias")] * (3 - len(node.args))
            _, wnode, bnode = args[:3]
            weight = _const(gm, wnode)
            if weight is None or (bnode is not None and _const(gm, bnode) is None):
                continue
            gelu = next(iter(node.users)) if len(node.users) == 1 else None
            if bnode is None and gelu is not None and gelu.op == "call_function" and gelu.target is bias_gelu \
                    and gelu.args[0] is node and not node.kwargs:
                out.append((node, wnode.target, weight, gelu.args[1], gelu))
            else:
                out.append((node, wnode.target, weight, bnode, None))
        elif node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Linear):
            mod = gm.get_submodule(node.target)
            out.append((node, f"{node.target}.weight", mod.weight,
                        f"{node.target}.bias" if mod.bias is not None else None, None))
    return out


def linear_name(weight_name: str) -> str:
    """The Linear a weight belongs to: ``a.ffn1.weight`` -> ``a.ffn1``; the graph pass's fused
    ``a.attn.qkv_weight`` -> ``a.attn.qkv``."""
    if weight_name.endswith(".weight"):
        return weight_name[: -len(".weight")]
    return weight_name.replace("qkv_weight", "qkv")


@torch.no_grad()
def input_outliers(gm: torch.fx.GraphModule, inputs: tuple) -> dict[str, tuple[float, int]]:
    """Per Linear of the graph (by :func:`linear_name`): its input's largest channel maximum |x|
    over the median channel's on one call ``gm(*inputs)``, and the id of its weight."""
    found = {node: (linear_name(name), id(weight)) for node, name, weight, _, _ in _linears(gm)}
    amax = {}

    class Watch(torch.fx.Interpreter):
        def run_node(self, n):
            if n in found:
                amax[n] = channel_amax(self.env[n.args[0]], amax.get(n))
            return super().run_node(n)

    Watch(gm).run(*inputs)
    return {found[n][0]: (outlier_ratio(a), found[n][1]) for n, a in amax.items()}


def apply(gm: torch.fx.GraphModule, cache: dict | None = None, int8: bool = False,
          keep_float: frozenset = frozenset(), qmax: int = 255) -> tuple[torch.fx.GraphModule, dict]:
    """Rewrite a graph-passed float32 module's Linears; returns it and what changed. Pass the
    same ``cache`` for graphs that share weights, then :func:`release` them all.

    ``int8``: oneDNN's INT8 Linear, activations quantized per call to ``0..qmax``, except the
    Linears whose weights' ids are in ``keep_float`` (prepacked float32)."""
    if not available(int8):
        raise RuntimeError(f"torch {torch.__version__} has no oneDNN prepacked "
                           f"{'INT8 Linear (torch.ops.onednn.qlinear_pointwise)' if int8 else 'Linear (torch.ops.mkldnn._linear_pointwise)'}")
    cache = {} if cache is None else cache
    counts = collections.Counter()
    for node, name, weight, bias, gelu in _linears(gm):
        x = node.args[0]  # read now: an earlier rewrite may have replaced the node that feeds it
        last = gelu if gelu is not None else node
        with gm.graph.inserting_before(last):
            b = gm.graph.get_attr(bias) if isinstance(bias, str) else bias
            if int8 and id(weight) not in keep_float:
                w = _pack(gm, name, weight, cache, int8=True)
                new = gm.graph.call_function(qlinear_gelu if gelu is not None else qlinear, (x, *w, b, qmax))
                kind = "onednn_qlinear"
            else:
                w = _pack(gm, name, weight, cache)
                new = gm.graph.call_function(linear_gelu if gelu is not None else linear, (x, *w, b))
                kind = "onednn_linear"
        last.replace_all_uses_with(new)
        gm.graph.erase_node(last)
        if gelu is not None:
            gm.graph.erase_node(node)
        counts[kind + ("_gelu" if gelu is not None else "")] += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    kinds = ("onednn_linear_gelu", "onednn_linear") + (("onednn_qlinear_gelu", "onednn_qlinear") if int8 else ())
    return gm, {k: counts[k] for k in kinds}


def release(*gms: torch.fx.GraphModule) -> int:
    """Drop the float weights no graph reads any more (the prepacked copies replace them), from
    graphs that may share submodules; returns how many tensors were dropped."""
    used, called = set(), set()  # tensors read by get_attr; modules run as modules (all of theirs stay)
    for gm in gms:
        for node in gm.graph.nodes:
            if node.op == "get_attr":
                owner, _, attr = node.target.rpartition(".")
                used.add((id(gm.get_submodule(owner) if owner else gm), attr))
            elif node.op == "call_module":
                called.update(id(m) for m in gm.get_submodule(node.target).modules())
    dropped = 0
    for gm in gms:
        for mod in list(gm.modules()):
            if id(mod) in called:
                continue
            for attr in list(mod._parameters) + list(mod._buffers):
                if (id(mod), attr) not in used and (getattr(mod, attr, None) is not None):
                    delattr(mod, attr)
                    dropped += 1
    return dropped
