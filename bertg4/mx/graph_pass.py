"""The graph pass on MXNet's exported graph: ``MHAInterleave`` and ``AddBiasGelu``.

The original recipe compiled a C++ pass library against ``mxnet/include/mxnet/lib_api.h``
and applied it with ``mx.library.load`` + ``optimize_for``. bertg4 applies the same two
rewrites to the exported files (``<prefix>-symbol.json`` + ``<prefix>-0000.params``) in
Python, at export time:

* no compiler, and no library that must match the exact ``lib_api.h`` of the installed
  MXNet build (CPU wheel, ``mxnet-cu102``, a DLAMI's build): the rewritten files load with
  plain ``SymbolBlock.imports`` anywhere;
* the rewrite is data (nodes and arrays), so tests can inspect it node by node;
* the pass reads each tensor from the node that really feeds it. The published C++ pass
  for MXNet >= 1.8 took the value *bias* from the value *weight*'s input; here every
  slot of the joint bias comes from its own bias variable, and a test with distinct
  Q/K/V biases checks it.

``MHAInterleave``: GluonNLP 0.10 builds the interleaved QKV weight on every call
(``Reshape`` of the query/key/value weights to ``(heads, -1, units)``, ``Concat`` on the
second axis, ``Reshape`` to ``(3 * units, units)``; likewise ``stack`` for the biases).
The pass computes that ``(3 * units, units)`` weight and ``(3 * units,)`` bias once
(:func:`bertg4.checkpoint.interleave_qkv`) and feeds the FullyConnected from two new
variables; the per-call nodes disappear.

``AddBiasGelu``: the FFN's first FullyConnected (the one feeding the GELU) gets
``no_bias=True``; its bias is added by a separate ``broadcast_add`` right before the GELU,
so bias-add and GELU become two adjacent pointwise operators that a fusing backend can
run as one kernel (the original recipe's library registered such a fused operator). Whether
MXNet 1.9's own GPU pointwise fusion (``MXNET_USE_FUSION``) joins this pair has not been
measured here; on a CPU nothing fuses them: the outputs stay equal and the speed is
whatever the split costs, which ``bertg4 bench`` records.
"""
from __future__ import annotations

import json

import numpy as np

from ..checkpoint import interleave_qkv

DTYPE_FLAGS = {np.dtype(np.float32): "0", np.dtype(np.float64): "1", np.dtype(np.float16): "2"}


class GraphPassError(ValueError):
    pass


def _shape_attr(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _var(name: str, arr: np.ndarray) -> dict:
    return {"op": "null", "name": name, "inputs": [],
            "attrs": {"__shape__": _shape_attr(arr.shape), "__dtype__": DTYPE_FLAGS[arr.dtype],
                      "__storage_type__": "0"}}


def _shape(node: dict) -> tuple:
    text = node.get("attrs", {}).get("shape", "").strip("()[] ")
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise GraphPassError(f"{node['name']}: cannot read Reshape shape {text!r}") from None


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _qkv_pattern(nodes: list[dict], fc: dict):
    """For the fused QKV FullyConnected: (heads, [q,k,v] weight vars, [q,k,v] bias vars) or None."""
    if len(fc["inputs"]) != 3:
        return None
    w_reshape, b_reshape = nodes[fc["inputs"][1][0]], nodes[fc["inputs"][2][0]]
    if w_reshape["op"] != "Reshape" or b_reshape["op"] != "Reshape":
        return None
    concat, stack = nodes[w_reshape["inputs"][0][0]], nodes[b_reshape["inputs"][0][0]]
    if concat["op"] != "Concat" or stack["op"] != "stack" or len(concat["inputs"]) != 3 \
            or len(stack["inputs"]) != 3:
        return None
    # GluonNLP 0.10's layout exactly: weights (heads, -1, 0) concatenated on axis -2 and
    # flattened to (-1, 0); biases (heads, -1) stacked on axis 1 and flattened to (-1,)
    if concat["attrs"].get("dim") not in ("-2", "1") or stack["attrs"].get("axis") != "1" \
            or _shape(w_reshape) != (-1, 0) or _shape(b_reshape) != (-1,):
        return None
    weights, biases, heads = [], [], set()
    for inputs, out, tail in ((concat["inputs"], weights, (-1, 0)), (stack["inputs"], biases, (-1,))):
        for (i, _, _) in inputs:
            r = nodes[i]
            if r["op"] != "Reshape" or nodes[r["inputs"][0][0]]["op"] != "null":
                return None
            shape = _shape(r)
            if len(shape) != 1 + len(tail) or shape[1:] != tail:
                return None
            heads.add(shape[0])
            out.append(nodes[r["inputs"][0][0]]["name"])
    if len(heads) != 1:
        raise GraphPassError(f"{fc['name']}: the Q/K/V reshapes disagree on the number of heads {sorted(heads)}")
    for names, kind in ((weights, "weight"), (biases, "bias")):
        for name, slot in zip(names, ("query", "key", "value")):
            if not name.endswith(f"{slot}_{kind}"):
                raise GraphPassError(f"QKV {kind} slot {slot} is fed by {name!r}, not a {slot}_{kind}")
    return heads.pop(), weights, biases


def _rebuild(nodes: list[dict], heads: list) -> dict:
    """Keep the nodes the heads reach, in topological order; renumber every reference."""
    order, seen = [], set()

    def visit(i):
        stack = [(i, False)]
        while stack:
            j, done = stack.pop()
            if done:
                order.append(j)
                continue
            if j in seen:
                continue
            seen.add(j)
            stack.append((j, True))
            for (k, _, _) in reversed(nodes[j]["inputs"]):
                if k not in seen:
                    stack.append((k, False))

    for (h, _, _) in heads:
        visit(h)
    new_index = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        n = dict(nodes[old])
        n["inputs"] = [[new_index[i], o, v] for (i, o, v) in n["inputs"]]
        out.append(n)
    return {"nodes": out, "arg_nodes": [i for i, n in enumerate(out) if n["op"] == "null"],
            "heads": [[new_index[h], o, v] for (h, o, v) in heads]}


def apply(graph: dict, params: dict[str, np.ndarray], *, mha_interleave: bool = True,
          add_bias_gelu: bool = True) -> tuple[dict, dict[str, np.ndarray], dict]:
    """Rewrite an exported graph (parsed symbol JSON) and its parameters; return both + a report."""
    nodes = [dict(n, inputs=[list(x) for x in n["inputs"]], attrs=dict(n.get("attrs", {})))
             for n in graph["nodes"]]
    params = dict(params)
    report = {"qkv_prearranged": 0, "bias_gelu_split": 0, "nodes_before": op_counts(graph)}

    if mha_interleave:
        for fc in [n for n in nodes if n["op"] == "FullyConnected"]:
            found = _qkv_pattern(nodes, fc)
            if found is None:
                continue
            heads, wnames, bnames = found
            missing = [n for n in wnames + bnames if n not in params]
            if missing:
                raise GraphPassError(f"parameters {missing} feed {fc['name']} but are not in the params")
            w = interleave_qkv(*(params[n] for n in wnames), num_heads=heads)
            b = interleave_qkv(*(params[n] for n in bnames), num_heads=heads)
            base = wnames[0][: -len("query_weight")]
            wname, bname = base + "qkv_weight", base + "qkv_bias"
            nodes.append(_var(wname, w))
            nodes.append(_var(bname, b))
            fc["inputs"][1] = [len(nodes) - 2, 0, 0]
            fc["inputs"][2] = [len(nodes) - 1, 0, 0]
            params[wname], params[bname] = w, b
            for n in wnames + bnames:
                del params[n]
            report["qkv_prearranged"] += 2  # tensors: the joint weight and the joint bias

    if add_bias_gelu:
        consumers: dict[int, int] = {}
        for n in nodes:
            for (i, _, _) in n["inputs"]:
                consumers[i] = consumers.get(i, 0) + 1
        heads = {h for (h, _, _) in graph["heads"]}
        for act in [n for n in nodes if n["op"] == "LeakyReLU" and n["attrs"].get("act_type") == "gelu"]:
            fc_index = act["inputs"][0][0]
            fc = nodes[fc_index]
            if fc["op"] != "FullyConnected" or _true(fc["attrs"].get("no_bias", "False")) \
                    or len(fc["inputs"]) != 3 or consumers.get(fc_index) != 1 or fc_index in heads:
                continue  # only a FullyConnected whose one reader is the GELU may lose its bias
            bias_ref = fc["inputs"][2]
            fc["attrs"]["no_bias"] = "True"
            fc["inputs"] = fc["inputs"][:2]
            nodes.append({"op": "broadcast_add", "name": fc["name"] + "_bias_add", "attrs": {},
                          "inputs": [[fc_index, 0, 0], bias_ref]})
            act["inputs"][0] = [len(nodes) - 1, 0, 0]
            report["bias_gelu_split"] += 1

    out = _rebuild(nodes, graph["heads"])
    out["attrs"] = graph.get("attrs", {})
    used = {n["name"] for n in out["nodes"] if n["op"] == "null"}
    unused = sorted(set(params) - used)
    if unused:
        raise GraphPassError(f"after the pass, parameters {unused[:5]} feed no node")
    report["nodes_after"] = op_counts(out)
    return out, params, report


def op_counts(graph: dict) -> dict[str, int]:
    """Nodes per operator (``variable`` for inputs and parameters)."""
    counts: dict[str, int] = {}
    for n in graph["nodes"]:
        op = "variable" if n["op"] == "null" else n["op"]
        counts[op] = counts.get(op, 0) + 1
    return counts


def apply_files(prefix: str, **switches) -> dict:
    """Rewrite ``<prefix>-symbol.json`` and ``<prefix>-0000.params`` in place; return the report."""
    from .compat import import_mxnet
    mx, _ = import_mxnet()
    with open(prefix + "-symbol.json", encoding="utf-8") as f:
        graph = json.load(f)
    saved = mx.nd.load(prefix + "-0000.params")
    kinds = {k.split(":", 1)[1]: k.split(":", 1)[0] for k in saved}
    params = {k.split(":", 1)[1]: v.asnumpy() for k, v in saved.items()}
    graph, params, report = apply(graph, params, **switches)
    with open(prefix + "-symbol.json", "w", encoding="utf-8") as f:
        json.dump(graph, f, indent=2)
    mx.nd.save(prefix + "-0000.params",
               {f"{kinds.get(k, 'arg')}:{k}": mx.nd.array(v, dtype=v.dtype) for k, v in params.items()})
    return report
