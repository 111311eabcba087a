"""Where the time goes: one forward pass broken down by operation type.

The original article's operator chart puts GEMMs at up to 56 % of BERT-base time
(sequence length 128, batch 128). :func:`profile_ops` measures that breakdown for any
predictor: warm-up forwards first, then ``repeats`` profiled forwards, and every
profiled operator's time is put in one of :data:`CATEGORIES`:

=========================== ===========================================================
GEMM                        the projections: ``linear``/``addmm``/``mm``/``matmul``,
                            MXNet ``FullyConnected``
attention batched GEMM      ``bmm``/``baddbmm`` (BERT has no other batched GEMM), fused
                            ``scaled_dot_product_attention`` and everything inside it,
                            MXNet ``batch_dot`` and ``_contrib_interleaved_matmul_selfatt_*``
softmax                     ``softmax``, masked softmax
LayerNorm                   ``layer_norm``
GELU                        ``gelu``, MXNet ``LeakyReLU`` (``act_type='gelu'`` in BERT)
bias add / elementwise add  ``add`` (residuals, the mask), MXNet ``elemwise_add``,
                            ``broadcast_add``, ``_plus_scalar``
copies/transposes           ``copy_``, ``contiguous``/``clone`` (a materialising
                            ``reshape``), ``permute``/``transpose``, ``cat``; MXNet
                            ``transpose``, ``Reshape``, ``SwapAxis``, ``Concat``, ``_copy``
other                       everything else (embedding lookups, masking, scaling, pooler
                            tanh, allocation)
=========================== ===========================================================

How time is counted (PyTorch engines ``pt`` and ``hf``, with ``torch.profiler``):

* On a CPU, each operator event contributes its **self time** (its duration minus that of
  the operators it called), so nothing is counted twice and the categories sum to the
  profiled self-time total exactly.
* On a CUDA device, each **kernel** (and device memcpy/memset) contributes its device
  time; a kernel belongs to the operator that launched it, and a kernel with no launching
  operator (a CUDA-graph replay) is classified by its kernel name.
* An event takes the category of its own name, with three rules of context: anything
  inside a kernel-level operator of a compute category (``addmm``, ``bmm``, ``softmax``,
  ``layer_norm``, ``gelu``, ``scaled_dot_product_attention``, ...) belongs to that
  operator (e.g. ``addmm`` copying its bias into the output is GEMM time); the composite
  ``linear``/``matmul`` belong to the GEMM they lead to (``matmul`` of two 4-d tensors
  reaches ``bmm``: attention); views and bookkeeping (``view``, ``t``, ``expand``,
  ``empty``, ...) inside another operator belong to it. A real copy inside ``matmul``
  (its materialising ``reshape``) stays a copy.
* An operator written out of elementary operators is counted by those: the fp16 rung's
  unsafe fp16 softmax/LayerNorm reductions show up as exp, amax, adds, slices and
  divisions, and the graph pass's ``bias_gelu`` as one add and one GELU.

``calls`` counts operator calls per forward: an event counts once unless the operator
that called it is of the same category (``linear`` → ``addmm`` is one GEMM call); on a
CUDA device it counts kernels.

The ``mx`` engine plugs in through :func:`bertg4.mx.profile.op_times` (see
:func:`profile_ops`); :func:`categorize` knows MXNet's operator names.
"""
from __future__ import annotations

import os
import re
import time

from .bench import record, write_jsonl
from .system import versions

GEMM = "GEMM"
ATTENTION = "attention batched GEMM"
SOFTMAX = "softmax"
LAYERNORM = "LayerNorm"
GELU = "GELU"
ADD = "bias add / elementwise add"
COPY = "copies/transposes"
OTHER = "other"
CATEGORIES = (GEMM, ATTENTION, SOFTMAX, LAYERNORM, GELU, ADD, COPY, OTHER)

# exact operator names (lower case, namespace removed): torch aten ops and MXNet operators
_EXACT = {
    GEMM: {"linear", "addmm", "addmm_", "mm", "matmul", "addmv", "mv", "dot", "_addmm_activation",
           "mkldnn_linear", "_mkl_linear", "fullyconnected", "_sg_mkldnn_fully_connected",
           "_sg_onednn_fully_connected", "einsum"},
    ATTENTION: {"bmm", "baddbmm", "baddbmm_", "addbmm", "batch_dot", "_sg_mkldnn_selfatt_qk",
                "_sg_mkldnn_selfatt_valatt", "_sg_onednn_selfatt_qk", "_sg_onednn_selfatt_valatt"},
    GELU: {"leakyrelu"},  # MXNet BERT's GELU is LeakyReLU(act_type='gelu')
    ADD: {"add", "add_", "elemwise_add", "broadcast_add", "_plus_scalar", "_plus", "add_n",
          "elementwisesum", "_grad_add"},
    COPY: {"copy_", "copy", "_copy", "contiguous", "clone", "_to_copy", "to", "permute",
           "transpose", "t", "swapaxis", "swapaxes", "reshape", "reshape_like", "view",
           "_unsafe_view", "_reshape_alias", "as_strided", "expand", "expand_as", "expand_dims",
           "cat", "concat", "stack", "slice", "slice_axis", "slice_like", "_slice", "select",
           "narrow", "split", "split_with_sizes", "_split_v2", "unbind", "chunk", "unsqueeze",
           "squeeze", "flatten", "unflatten", "movedim", "alias", "detach", "flip"},
}
_NAME_TO_CATEGORY = {name: cat for cat, names in _EXACT.items() for name in names}
# operators that only make views or do bookkeeping: inside another operator they are its time
_VIEWS = {"view", "_unsafe_view", "_reshape_alias", "as_strided", "expand", "expand_as", "t",
          "transpose", "permute", "unsqueeze", "squeeze", "select", "slice", "narrow", "alias",
          "detach", "reshape", "flatten", "unflatten", "movedim", "split", "split_with_sizes",
          "chunk", "unbind", "resolve_conj", "resolve_neg"}
# operators that only lead to a GEMM (their category is that of the GEMM they reach)
_COMPOSITE = {"linear", "matmul", "einsum"}
_OPAQUE = {GEMM, ATTENTION, SOFTMAX, LAYERNORM, GELU}
# substrings of longer names (CUDA kernels, fused or contributed operators), checked in order
_PATTERNS = [
    (ATTENTION, re.compile(r"scaled_dot_product|interleaved_matmul|selfatt|flash|fmha|"
                           r"efficient_attention|attention|sdpa|batched_?gemm|bmm")),
    (SOFTMAX, re.compile(r"softmax")),
    (LAYERNORM, re.compile(r"layer_?norm")),
    (GELU, re.compile(r"gelu")),
    (GEMM, re.compile(r"gemm|gemv|cublas|cutlass|xmma|fully_?connected|matmul|linear")),
    (COPY, re.compile(r"copy|memcpy|transpose|permute|concat|catarray|\bcat\b|reshape")),
    (ADD, re.compile(r"(^|[^a-z])add([^a-z]|$)|functor_add|add_kernel|addfunctor|plus")),
]


def _short(name: str) -> str:
    """``aten::addmm`` -> ``addmm`` (lower case); MXNet names have no namespace."""
    return name.rsplit("::", 1)[-1].strip().lower()


def categorize(name: str) -> str:
    """The category (one of :data:`CATEGORIES`) of one operator or kernel name.

    Knows PyTorch's ``aten::`` operators, MXNet operator names (``FullyConnected``,
    ``batch_dot``, ``_contrib_interleaved_matmul_selfatt_qk``, ``LayerNorm``, ``LeakyReLU``,
    ``elemwise_add``, ``SwapAxis``, ...) and CUDA kernel names (``...gemm...``,
    ``softmax_warp_forward``, ``vectorized_layer_norm_kernel``, ...). Anything unknown is
    ``"other"``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"categorize takes an operator or kernel name, got {name!r}")
    short = _short(name)
    if short in _NAME_TO_CATEGORY:
        return _NAME_TO_CATEGORY[short]
    if short.startswith("_") and short[1:] in _NAME_TO_CATEGORY:
        return _NAME_TO_CATEGORY[short[1:]]  # a private variant (leading underscore)
    low = name.lower()
    for cat, pattern in _PATTERNS:
        if pattern.search(low):
            return cat
    return OTHER


# --- the PyTorch engines ---------------------------------------------------------------

def _attribution():
    """``resolve(event) -> category`` following the rules of the module docstring."""
    cache: dict[int, str] = {}

    def outermost_opaque(e):
        found, a = None, e
        while a is not None:
            c = categorize(a.name)
            if c in _OPAQUE and _short(a.name) not in _COMPOSITE:
                found = c
            a = a.cpu_parent
        return found

    def reached_gemm(e):
        stack = list(e.cpu_children)
        while stack:
            ch = stack.pop(0)
            c = categorize(ch.name)
            if c in (GEMM, ATTENTION) and _short(ch.name) not in _COMPOSITE:
                return c
            stack.extend(ch.cpu_children)
        return categorize(e.name)

    def resolve(e):
        key = id(e)
        if key not in cache:
            opaque = outermost_opaque(e)
            short = _short(e.name)
            if opaque is not None:
                cat = opaque
            elif short in _COMPOSITE:
                cat = reached_gemm(e)
            else:
                cat = categorize(e.name)
                if e.cpu_parent is not None and (cat == OTHER or short in _VIEWS):
                    cat = resolve(e.cpu_parent)
            cache[key] = cat
        return cache[key]

    return resolve


def _torch_cpu_events(prof):
    """The profiler's CPU operator events (not async ones, not memory records)."""
    from torch.autograd import DeviceType
    return [e for e in prof.events()
            if e.device_type == DeviceType.CPU and not e.is_async and e.name != "[memory]"]


def classify_cpu_events(events) -> list[tuple[str, str, float, int, int]]:
    """``(name, category, self microseconds, calls, 1)`` for each CPU operator event (each
    event once, with its self time, so the rows sum to the events' self-time total);
    ``calls`` is 1 unless the calling operator is of the same category."""
    resolve = _attribution()
    rows = []
    for e in events:
        cat = resolve(e)
        first = e.cpu_parent is None or resolve(e.cpu_parent) != cat
        rows.append((e.name, cat, float(e.self_cpu_time_total), int(first), 1))
    return rows


def classify_device_events(cpu_events, device_events) -> list[tuple[str, str, float, int, int]]:
    """``(kernel name, category, microseconds, 1, 1)`` for each device kernel/memcpy/memset: the
    category of the operator that launched it, or of its own name when no operator did."""
    resolve = _attribution()
    ops = {e.id: e for e in cpu_events if getattr(e, "linked_correlation_id", 0) == 0
           and not getattr(e, "is_user_annotation", False)}
    rows = []
    for k in device_events:
        op = ops.get(getattr(k, "linked_correlation_id", 0))
        cat = resolve(op) if op is not None else categorize(k.name)
        rows.append((k.name, cat, float(k.time_range.elapsed_us()), 1, 1))
    return rows


def torch_op_times(predictor, staged, repeats: int, cuda: bool):
    """Profile ``repeats`` forwards of a PyTorch predictor on ``staged`` inputs.

    Returns ``(rows, wall_s)``: rows ``(name, category, microseconds, calls, events)`` over
    all the repeats, one per profiled event (CPU: operator self time; CUDA: kernel time), and
    the wall time of the profiled forwards.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(repeats):
            predictor.run(staged)
        predictor.synchronize()
        wall = time.perf_counter() - t0
    cpu_events = _torch_cpu_events(prof)
    if not cuda:
        return classify_cpu_events(cpu_events), wall
    device_events = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    return classify_device_events(cpu_events, device_events), wall


# --- one predictor -----------------------------------------------------------------------

def _mx_op_times(predictor, batch, repeats):
    try:
        from .mx import profile as mx_profile
    except ImportError as e:
        raise RuntimeError(f"engine mx: cannot profile operators, bertg4.mx.profile is not "
                           f"importable ({e})") from None
    if not hasattr(mx_profile, "op_times"):
        raise RuntimeError("engine mx: bertg4.mx.profile has no op_times(predictor, batch, repeats)")
    return mx_profile.op_times(predictor, batch, repeats)


def profile_ops(predictor, batch, warmup: int = 2, repeats: int = 3, top: int = 5,
                **extra) -> list[dict]:
    """Break one forward pass of ``predictor`` on ``batch`` down by operation type.

    ``batch`` is a :class:`bertg4.text.Batch`; all of its rows run in each forward.
    ``warmup`` untimed forwards run first, then ``repeats`` profiled ones. Returns one record
    per category of :data:`CATEGORIES` (in that order) with ``time_ms`` and ``calls`` per
    forward, ``share`` of the profiled total, the category's ``top`` operators
    (``top_ops``: name, ms per forward, that operator's calls per forward), ``total_ms`` (the sum over
    categories), ``profiled_wall_ms`` (wall time per forward while profiling) and
    ``time_basis``, plus :func:`bertg4.bench.record`'s fields and ``extra``.

    Engines: ``pt``/``hf`` use ``torch.profiler`` (CPU self time; device kernel time when the
    predictor runs on CUDA). ``mx`` calls ``bertg4.mx.profile.op_times(predictor, batch,
    repeats)``, which profiles ``repeats`` forwards (warm-up already done here) and returns
    ``(operator name, self ms summed over the repeats, calls summed over the repeats)``
    tuples; each name goes through :func:`categorize`.
    """
    from .text import Batch
    if not isinstance(batch, Batch):
        raise ValueError(f"profile_ops takes a bertg4.text.Batch, got {type(batch).__name__}")
    if not isinstance(repeats, int) or repeats < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats!r}, warmup={warmup!r}")
    engine = getattr(predictor, "engine", None)
    staged = predictor.prepare(batch)
    for _ in range(warmup):
        predictor.run(staged)
    predictor.synchronize()
    if engine in ("pt", "hf"):
        cuda = str(predictor.device).startswith("cuda")
        rows, wall = torch_op_times(predictor, staged, repeats, cuda)
        basis = "CUDA kernel time" if cuda else "CPU operator self time"
    elif engine == "mx":
        t0 = time.perf_counter()
        raw = _mx_op_times(predictor, batch, repeats)
        wall = time.perf_counter() - t0
        rows = [(name, categorize(name), 1e3 * float(ms), int(calls), int(calls))
                for name, ms, calls in raw]
        basis = "MXNet profiler operator self time"
    else:
        raise ValueError(f"cannot profile engine {engine!r}: profile_ops knows pt, hf and mx")
    return _records(predictor, batch, rows, repeats, warmup, wall, basis, top, extra)


def _records(predictor, batch, rows, repeats, warmup, wall, basis, top, extra):
    total_us = sum(row[2] for row in rows)
    if total_us <= 0:
        raise RuntimeError(f"{predictor.engine}: the profiler recorded no operator time")
    per_cat = {c: {"us": 0.0, "calls": 0, "ops": {}} for c in CATEGORIES}
    for name, cat, us, calls, events in rows:
        slot = per_cat[cat]
        slot["us"] += us
        slot["calls"] += calls
        op = slot["ops"].setdefault(name, [0.0, 0])
        op[0] += us
        op[1] += events
    out = []
    for cat in CATEGORIES:
        slot = per_cat[cat]
        ops = sorted(slot["ops"].items(), key=lambda kv: -kv[1][0])[:top]
        fields = {"kind": "op_profile", "status": "ok", "batch_size": len(batch),
                  "seq_length": batch.seq_len, "category": cat,
                  "time_ms": slot["us"] / 1e3 / repeats, "share": slot["us"] / total_us,
                  "calls": _per_forward(slot["calls"], repeats),
                  "top_ops": [[n, us / 1e3 / repeats, _per_forward(c, repeats)] for n, (us, c) in ops],
                  "total_ms": total_us / 1e3 / repeats, "profiled_wall_ms": 1e3 * wall / repeats,
                  "time_basis": basis, "warmup": warmup, "repeats": repeats}
        out.append(record(predictor, fields, **extra))
    return out


def _per_forward(count, repeats):
    value = count / repeats
    return int(value) if value == int(value) else round(value, 2)


def not_applicable(engine, recipe, task, batch_size, seq_length, device, reason, **extra) -> dict:
    """The record of a recipe the engine cannot honour on the device."""
    import datetime as _dt
    from .recipe import get_recipe
    return {"kind": "op_profile", "engine": engine, "recipe": get_recipe(recipe).name, "task": task,
            "batch_size": batch_size, "seq_length": seq_length, "dtype": get_recipe(recipe).dtype,
            "device": device, "status": "not applicable", "reason": reason, **extra,
            "versions": versions(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def profile(model: str = "embedded", engines=("pt",), recipes=("baseline",), task: str = "SST",
            batch_size: int = 8, seq_length: int = 128, device: str = "cpu", warmup: int = 2,
            repeats: int = 3, vocab: str | None = None, log=None) -> list[dict]:
    """:func:`profile_ops` for every engine x recipe on one model, task and batch shape
    (SST-2 dev sentences when found, else the shipped samples, cycled to ``batch_size``).
    A recipe an engine cannot honour on ``device`` gives one ``status: "not applicable"``
    record with the reason. Several engines are profiled one after the other, each in a fresh
    process (see :func:`bertg4.sweep.run_sweep`: their thread pools slow each other down)."""
    engines = list(dict.fromkeys(engines))
    if len(engines) > 1:
        from .bench import in_fresh_process
        records = []
        for engine in engines:
            records += in_fresh_process(profile, model, (engine,), recipes, task, batch_size, seq_length,
                                        device, warmup, repeats, vocab, log if log is print else None)
        return records
    from .api import load
    from .checkpoint import load_checkpoint
    from .mx.compat import MXNetUnavailable
    from .recipe import NotApplicable, get_recipe
    from .sweep import _inputs
    from .tasks import get_task
    from .text import check_batch_size
    check_batch_size(batch_size)
    task = get_task(task).name
    recipes = [get_recipe(r).name for r in recipes]
    ckpt = load_checkpoint(model, vocab=vocab)
    texts, source = _inputs(task)
    records, batch = [], None
    for engine in engines:
        for recipe in recipes:
            try:
                p = load(task=task, engine=engine, recipe=recipe, device=device,
                         seq_length=seq_length, checkpoint=ckpt)
            except NotApplicable as e:
                records.append(not_applicable(engine, recipe, task, batch_size, seq_length, device,
                                              str(e), model=ckpt.config.name))
                if log:
                    log(f"{engine} {recipe}: not applicable: {e}")
                continue
            except MXNetUnavailable as e:
                rec = not_applicable(engine, recipe, task, batch_size, seq_length, device, str(e),
                                     model=ckpt.config.name)
                records.append({**rec, "status": "not available"})
                if log:
                    log(f"{engine} {recipe}: not available: {e}")
                continue
            if batch is None:  # one tokenizer (the checkpoint's) for every engine and recipe
                feats = p.featurize(texts)
                batch = getattr(feats, "batch", feats).repeat_to(batch_size)[:batch_size]
            if log:
                log(f"{engine} {recipe} ({p.recipe.dtype}): {warmup} warm-up + {repeats} profiled "
                    f"forwards, batch {batch_size}, seq {seq_length} on {p.device_name()}")
            records += profile_ops(p, batch, warmup=warmup, repeats=repeats, data=source,
                                   sweep_model=model)
            del p
    return records


# --- presentation ----------------------------------------------------------------------

def _label(r: dict) -> str:
    return f"{r['engine']} {r['recipe']} ({r['dtype']})"


def format_profile(records: list[dict]) -> str:
    """Markdown: the share of each category per engine/recipe side by side, then one table per
    engine/recipe (ms and calls per forward, the largest operators), then what did not run."""
    ok = [r for r in records if r.get("status", "ok") == "ok" and "category" in r]
    groups = list(dict.fromkeys((_label(r), r["task"], r["batch_size"], r["seq_length"],
                                 r["device_name"]) for r in ok))
    parts = []
    if ok:
        rows = {g: {r["category"]: r for r in ok if (_label(r), r["task"], r["batch_size"],
                                                      r["seq_length"], r["device_name"]) == g}
                for g in groups}
        heads = [g[0] if len({x[1:] for x in groups}) == 1 else f"{g[0]}, {g[1]} b{g[2]} s{g[3]}"
                 for g in groups]
        cats = [c for c in CATEGORIES if any(c in rows[g] for g in groups)]
        cats += sorted({r["category"] for r in ok} - set(CATEGORIES))
        lines = ["| share of time | " + " | ".join(heads) + " |",
                 "|---|" + "---:|" * len(groups)]
        for c in cats:
            lines.append(f"| {c} | " + " | ".join(
                f"{100 * rows[g][c]['share']:.1f} %" if c in rows[g] else "" for g in groups) + " |")
        lines.append("| **total ms per forward** | " + " | ".join(
            f"{next(iter(rows[g].values()))['total_ms']:.1f}" for g in groups) + " |")
        r0 = ok[0]
        parts.append(f"**{r0['model']}, {r0['task']}, batch {r0['batch_size']}, seq "
                     f"{r0['seq_length']} on {r0['device_name']}** — {r0['time_basis']}, mean of "
                     f"{r0['repeats']} profiled forwards after {r0['warmup']} warm-up\n\n"
                     + "\n".join(lines))
        for g, head in zip(groups, heads):
            cat_rows = rows[g]
            any_r = next(iter(cat_rows.values()))
            table = ["| category | ms per forward | share | calls per forward | largest operators (ms) |",
                     "|---|---:|---:|---:|---|"]
            for c in cats:
                if c not in cat_rows:
                    continue
                r = cat_rows[c]
                top = ", ".join(f"{n} {ms:.1f}" for n, ms, _ in r.get("top_ops", [])[:3])
                table.append(f"| {c} | {r['time_ms']:.2f} | {100 * r['share']:.1f} % | {r['calls']} | "
                             f"{top} |")
            table.append(f"| **total** | {any_r['total_ms']:.2f} | 100 % | "
                         f"{_per_forward(sum(r['calls'] for r in cat_rows.values()), 1)} | wall time "
                         f"while profiled: {any_r['profiled_wall_ms']:.1f} ms |")
            parts.append(f"**{head}**\n\n" + "\n".join(table))
    other = [r for r in records if r.get("status", "ok") != "ok"]
    if other:
        seen = dict.fromkeys((r.get("engine"), r.get("recipe"), r.get("status"), r.get("reason", ""))
                             for r in other)
        parts.append("Did not run:\n\n" + "\n".join(f"- {e} {rc}: {s} — {why}" for e, rc, s, why in seen))
    return "\n\n".join(parts) if parts else "no records"


# --- the `bertg4 profile` command ---------------------------------------------------------

def add_parser(sub):
    """Add the ``profile`` subcommand to an argparse subparsers object; returns its parser."""
    from .argtypes import positive_int as _positive_int, task_name as _task
    from .recipe import RECIPES
    p = sub.add_parser("profile", help="where the time goes: one forward pass by operation type",
                       description="Profile forward passes and break their time down by operation "
                       "type (GEMM, attention batched GEMM, softmax, LayerNorm, GELU, bias add, "
                       "copies/transposes, other); write records.jsonl, profile.md and profile.png.")
    p.add_argument("--model", default="embedded",
                   help="'embedded' (default), a Hugging Face folder, a GluonNLP .params file, or "
                   "random:<preset> (random:bert_12_768_12 is BERT-base)")
    p.add_argument("--vocab", help="vocab.txt or GluonNLP .vocab file (for .params models)")
    p.add_argument("--engine", action="append", choices=["pt", "hf", "mx"],
                   help="repeatable: pt (default), hf, mx")
    p.add_argument("--recipe", action="append", choices=list(RECIPES),
                   help="repeatable (default baseline)")
    p.add_argument("--task", type=_task, default="SST", help="default SST")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="default 8")
    p.add_argument("--seq-length", type=_positive_int, default=128, help="default 128")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards first (default 2)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="profiled forwards (default 3)")
    p.add_argument("--output", default="profile_out",
                   help="folder for records.jsonl, profile.md and profile.png (default profile_out)")
    return p


def run(args) -> int:
    """``bertg4 profile``: profile, write records.jsonl, profile.md, profile.png, print the table."""
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    records = profile(args.model, args.engine or ["pt"], args.recipe or ["baseline"], args.task,
                      args.batch_size, args.seq_length, args.device, args.warmup, args.repeats,
                      vocab=getattr(args, "vocab", None), log=print)
    paths = write_outputs(records, args.output)
    print(format_profile(records))
    print("written: " + ", ".join(paths))
    return 0


def write_outputs(records: list[dict], out_dir: str) -> list[str]:
    """records.jsonl, profile.md and (when anything ran) profile.png in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [write_jsonl(records, os.path.join(out_dir, "records.jsonl"))]
    md = os.path.join(out_dir, "profile.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write(format_profile(records) + "\n")
    paths.append(md)
    if any(r.get("status", "ok") == "ok" for r in records):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from .plots import op_breakdown
        fig = op_breakdown(records)
        png = os.path.join(out_dir, "profile.png")
        fig.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(png)
    return paths


def main(argv=None) -> int:
    """``python -m bertg4.profile [flags]``: the same as ``bertg4 profile [flags]``."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="bertg4")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"bertg4 profile: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
