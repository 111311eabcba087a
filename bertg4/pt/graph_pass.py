"""The export-time graph pass, on a ``torch.fx`` graph (the counterpart of the original's
MXNet ``AddBiasGelu`` and ``MHAInterleave`` passes).

1. **Bias + GELU.** The FFN's first Linear loses its bias (``F.linear(x, W)``), and the
   bias is added inside one pointwise op, :func:`bias_gelu`, that also applies GELU.
2. **QKV prearrangement.** Every ``interleave_qkv(query.weight, key.weight, value.weight)``
   (and the same for the biases) that the interleaved attention computes on each call is
   evaluated once and stored as a constant ``(3*hidden, hidden)`` weight / ``(3*hidden,)``
   bias, rows ordered per head ``[q_h; k_h; v_h]``. Each slot is taken from its own tensor:
   the value bias lands in the value slots (a published version of the original pass read
   it from the wrong tensor).

The pass is idempotent: a second run finds nothing left to rewrite.
"""
from __future__ import annotations

import collections

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .attention import interleave_qkv


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GELU(x + bias) as one pointwise op (BERT's exact, erf-based GELU)."""
    return F.gelu(x + bias)


torch.fx.wrap("bias_gelu")


class _Tracer(torch.fx.Tracer):
    """Keeps the FFN's first Linear a module call so the pass can find it."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Linear) or super().is_leaf_module(m, qualname)


def trace(module: nn.Module) -> torch.fx.GraphModule:
    if isinstance(module, torch.fx.GraphModule):
        return module
    graph = _Tracer().trace(module)
    return torch.fx.GraphModule(module, graph, module.__class__.__name__)


def _fuse_bias_gelu(gm: torch.fx.GraphModule) -> int:
    count = 0
    for node in list(gm.graph.nodes):
        if not (node.op == "call_function" and node.target is F.gelu and len(node.args) == 1
                and not node.kwargs):
            continue
        lin = node.args[0]
        if not (isinstance(lin, torch.fx.Node) and lin.op == "call_module" and len(lin.users) == 1):
            continue
        mod = gm.get_submodule(lin.target)
        if not isinstance(mod, nn.Linear) or mod.bias is None:
            continue
        with gm.graph.inserting_before(node):
            weight = gm.graph.get_attr(f"{lin.target}.weight")
            bias = gm.graph.get_attr(f"{lin.target}.bias")
            mm = gm.graph.call_function(F.linear, (lin.args[0], weight))
            fused = gm.graph.call_function(bias_gelu, (mm, bias))
        node.replace_all_uses_with(fused)
        gm.graph.erase_node(node)
        gm.graph.erase_node(lin)
        count += 1
    return count


def _prearrange_qkv(gm: torch.fx.GraphModule, shared: dict | None = None) -> int:
    """``interleave_qkv`` of stored Q/K/V tensors -> one stored tensor, made once. ``shared``
    (by the ids of Q, K and V) hands graphs traced from the same weights the same fused tensor."""
    shared = {} if shared is None else shared
    count = 0
    for node in list(gm.graph.nodes):
        if not (node.op == "call_function" and node.target is interleave_qkv):
            continue
        *tensors, heads = node.args
        if not all(isinstance(t, torch.fx.Node) and t.op == "get_attr" for t in tensors):
            continue
        q, k, v = (_fetch(gm, t.target) for t in tensors)
        key = (id(q), id(k), id(v), heads)
        if key not in shared:
            shared[key] = (nn.Parameter(interleave_qkv(q.detach(), k.detach(), v.detach(), heads).clone(),
                                        requires_grad=False), (q, k, v))  # the sources pin the ids
        fused = shared[key][0]
        # "layers.3.attn.query.weight" -> a new parameter "layers.3.attn.qkv_weight"
        owner, _, leaf = tensors[0].target.rpartition(".query.")
        name = f"{owner}.qkv_{leaf}" if owner else f"qkv_{leaf}"
        parent_name, _, attr = name.rpartition(".")
        parent = gm.get_submodule(parent_name) if parent_name else gm
        parent.register_parameter(attr, fused)
        with gm.graph.inserting_before(node):
            const = gm.graph.get_attr(name)
        node.replace_all_uses_with(const)
        gm.graph.erase_node(node)
        count += 1
    return count


def _fetch(gm: torch.fx.GraphModule, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def node_counts(gm: torch.fx.GraphModule) -> collections.Counter:
    """How many nodes of each kind: ``call_module:Linear``, ``call_function:gelu``, ..."""
    counts = collections.Counter()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            kind = type(gm.get_submodule(node.target)).__name__
        elif node.op in ("call_function", "call_method"):
            kind = getattr(node.target, "__name__", str(node.target))
        else:
            kind = ""
        counts[f"{node.op}:{kind}" if kind else node.op] += 1
    return counts


def apply(module: nn.Module, shared: dict | None = None) -> tuple[torch.fx.GraphModule, dict]:
    """Trace (if needed) and rewrite; returns the module and a report of what changed. Pass
    one ``shared`` dict to graphs of the same weights (the padded and the packed model): their
    prearranged QKV tensors are then one tensor each, not one per graph."""
    gm = trace(module)
    gm.graph.eliminate_dead_code()  # count only what the forward uses, before and after
    before = node_counts(gm)
    fused = _fuse_bias_gelu(gm)
    prearranged = _prearrange_qkv(gm, shared)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    report = {"bias_gelu_fused": fused, "qkv_prearranged": prearranged,
              "nodes_before": dict(before), "nodes_after": dict(node_counts(gm))}
    return gm, report
