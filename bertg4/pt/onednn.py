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
graph. The prepacked weights are opaque oneDNN tensors of the running process: the model
is rebuilt from its checkpoint, never exported in this form.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .graph_pass import _fetch, bias_gelu


def available() -> bool:
    """Whether this torch has oneDNN (mkldnn) and its prepacked Linear ops."""
    return bool(torch.backends.mkldnn.is_available()) and \
        hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def linear_gelu(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GELU(x W^T + b) in one oneDNN kernel (exact, erf-based GELU, as BERT's)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none")


def _pack(gm: torch.fx.GraphModule, name: str, weight: torch.Tensor, cache: dict) -> torch.fx.Node:
    """A ``get_attr`` of ``weight`` prepacked; ``cache`` (by tensor) packs a weight shared by
    several graphs (the padded and the packed model) or several Linears once."""
    packed = cache.get(id(weight))
    if packed is None:
        packed = cache[id(weight)] = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous().float())
    attr = "onednn_w_" + name.replace(".", "_")
    if not hasattr(gm, attr):
        gm.register_buffer(attr, packed, persistent=False)
    return gm.graph.get_attr(attr)


def _const(gm: torch.fx.GraphModule, node) -> torch.Tensor | None:
    if isinstance(node, torch.fx.Node) and node.op == "get_attr":
        return _fetch(gm, node.target)
    return None


def apply(gm: torch.fx.GraphModule, cache: dict | None = None) -> tuple[torch.fx.GraphModule, dict]:
    """Rewrite a graph-passed float32 module's Linears; returns it and what changed. Pass the
    same ``cache`` for graphs that share weights, then :func:`release` them all."""
    if not available():
        raise RuntimeError(f"torch {torch.__version__} has no oneDNN prepacked Linear "
                           "(torch.ops.mkldnn._linear_pointwise)")
    cache = {} if cache is None else cache
    fused = plain = 0
    for node in list(gm.graph.nodes):
        # 1. bias_gelu(F.linear(x, W), b) -> linear_gelu(x, packed W, b)
        if node.op == "call_function" and node.target is bias_gelu:
            mm, bias = node.args
            if not (isinstance(mm, torch.fx.Node) and mm.op == "call_function" and mm.target is F.linear
                    and len(mm.args) == 2 and not mm.kwargs and len(mm.users) == 1):
                continue
            weight = _const(gm, mm.args[1])
            if weight is None:
                continue
            with gm.graph.inserting_before(node):
                w = _pack(gm, mm.args[1].target, weight, cache)
                new = gm.graph.call_function(linear_gelu, (mm.args[0], w, bias))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            gm.graph.erase_node(mm)
            fused += 1
    for node in list(gm.graph.nodes):
        # 2a. F.linear(x, W[, b]) on stored tensors
        if node.op == "call_function" and node.target is F.linear:
            args = list(node.args) + [node.kwargs.get("bias")] * (3 - len(node.args))
            x, wnode, bnode = args[:3]
            weight = _const(gm, wnode)
            if weight is None or (bnode is not None and _const(gm, bnode) is None):
                continue
            with gm.graph.inserting_before(node):
                w = _pack(gm, wnode.target, weight, cache)
                new = gm.graph.call_function(linear, (x, w, bnode))
        # 2b. nn.Linear module calls
        elif node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Linear):
            mod = gm.get_submodule(node.target)
            with gm.graph.inserting_before(node):
                w = _pack(gm, f"{node.target}.weight", mod.weight, cache)
                b = gm.graph.get_attr(f"{node.target}.bias") if mod.bias is not None else None
                new = gm.graph.call_function(linear, (node.args[0], w, b))
        else:
            continue
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        plain += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm, {"onednn_linear_gelu": fused, "onednn_linear": plain}


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
