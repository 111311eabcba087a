"""Recipe: the article's optimization ladder as data.

One frozen dataclass holds every switch; named rungs switch them on one at a time,
so a benchmark over ``ladder()`` is the article's "improvement of each
optimization" table::

    baseline            fp32, naive attention
    fp16                fp16; softmax/LayerNorm really reduce in fp16 (no safe accumulation)
    +safe_accumulation  softmax/LayerNorm read fp16, reduce in fp32 (MXNET_SAFE_ACCUMULATION=1)
    +interleaved        one fused, per-head interleaved QKV projection, strided batched GEMMs,
                        softmax masked by valid_length, (seq, batch, hidden) layout
    +true_fp16          GEMMs accumulate in fp16 (MXNET_FC_TRUE_FP16=1); GPU only
    +graph_pass         export-time pass: FFN bias detached and fused with GELU, QKV prearranged
    all                 + CUDA graphs (replay per (batch, seq) shape); GPU only

Extras beside the ladder: ``bf16``, ``sdpa-fp16``/``sdpa-fp32`` (PyTorch's fused attention),
``interleaved-fp32``, ``graph-pass-fp32``, ``int8`` (the CPU baseline of the article's c5
comparison: INT8 GEMMs; PyTorch dynamic quantization, or MXNet's oneDNN quantization with
calibration) and ``compile-fp32`` (beyond the article: ``torch.compile``/inductor over the
SDPA model; PyTorch only, compiled on the first call of each shape, so warm-up keeps compile
time out of the steady state; not with CUDA graphs or INT8, and not exported) and
``onednn-fp32`` (beyond the article, the graph pass carried on to a CPU: after it, every
Linear runs on oneDNN with its weight prepacked once at build time, and bias+GELU runs inside
the FFN's first Linear kernel; attention's float32 batched GEMMs run on oneDNN too where it
computes them in float32 (:mod:`bertg4.pt.matmul`); PyTorch on a CPU only, float32, not exported) and
``onednn-int8`` (the same graph on oneDNN's INT8 Linear: int8 weights prepacked, inputs
quantized per call, bias+GELU in the kernel, one quantization for the fused QKV).

An engine that cannot honour a switch on the current device raises
:class:`NotApplicable` -- it never runs something else silently.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
ATTENTIONS = ("naive", "interleaved", "sdpa")


class NotApplicable(ValueError):
    """A recipe switch this engine or device cannot honour."""


@dataclass(frozen=True)
class Recipe:
    name: str = "baseline"
    dtype: str = "float32"
    safe_accumulation: bool = True   # fp16 softmax/LayerNorm reduce in fp32
    attention: str = "naive"         # naive | interleaved | sdpa
    true_fp16: bool = False          # GEMMs accumulate in fp16 (CUDA)
    graph_pass: bool = False         # graph pass at build/export time (pt: torch.fx; mx: exported graph)
    cuda_graphs: bool = False        # capture and replay per (batch, seq) shape (CUDA)
    int8: bool = False               # INT8 GEMMs on a CPU (pt: dynamic quantization, or oneDNN's INT8 Linear with onednn; mx: oneDNN, calibrated)
    compile: bool = False            # torch.compile (inductor) of the model (pt only)
    onednn: bool = False             # oneDNN Linears, weights prepacked, bias+GELU fused (pt, CPU; fp32 or int8)

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}: choose float32, float16 or bfloat16")
        object.__setattr__(self, "dtype", DTYPES[self.dtype])
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}: choose one of {', '.join(ATTENTIONS)}")
        if self.true_fp16 and self.dtype != "float16":
            raise ValueError("true_fp16 accumulates fp16 GEMMs: it needs dtype float16")
        if not self.safe_accumulation and self.attention == "sdpa":
            raise ValueError("sdpa's fused kernels always reduce the softmax in fp32: "
                             "safe_accumulation=False cannot apply to attention='sdpa'")
        if self.graph_pass and self.attention != "interleaved":
            raise ValueError("the graph pass prearranges the interleaved QKV projection: it needs "
                             "attention='interleaved'")

        if self.compile and (self.cuda_graphs or self.int8):
            raise NotApplicable(f"recipe {self.name}: compile cannot apply with "
                                f"{'cuda_graphs (inductor captures its own graphs)' if self.cuda_graphs else 'int8 (inductor does not compile dynamically quantized Linear layers)'}")
        if self.onednn and (self.dtype != "float32" or not self.graph_pass or self.compile):
            raise ValueError("onednn prepacks the graph pass's float32 Linears: it needs dtype float32 and "
                             "graph_pass, without compile")
        if self.int8 and (self.dtype != "float32" or self.cuda_graphs or (self.graph_pass and not self.onednn)):
            raise ValueError("int8 quantizes the float32 model's Linear/FullyConnected layers: it needs "
                             "dtype float32 and no CUDA graphs; after the graph pass it needs onednn "
                             "(oneDNN's INT8 Linear, bias+GELU in the kernel)")

    def to_dict(self) -> dict:
        return asdict(self)

    def switches(self) -> dict:
        """The switches that differ from the fp32 baseline."""
        base = asdict(Recipe())
        return {k: v for k, v in asdict(self).items() if k != "name" and base[k] != v}


def ladder() -> list[Recipe]:
    """The ordered rungs, each adding one switch to the one before."""
    rungs = [Recipe("baseline")]
    steps = [("fp16", dict(dtype="float16", safe_accumulation=False)),
             ("+safe_accumulation", dict(safe_accumulation=True)),
             ("+interleaved", dict(attention="interleaved")),
             ("+true_fp16", dict(true_fp16=True)),
             ("+graph_pass", dict(graph_pass=True)),
             ("all", dict(cuda_graphs=True))]
    for name, change in steps:
        rungs.append(replace(rungs[-1], name=name, **change))
    return rungs


EXTRA = [Recipe("bf16", "bfloat16"), Recipe("sdpa-fp16", "float16", attention="sdpa"),
         Recipe("sdpa-fp32", attention="sdpa"),
         Recipe("interleaved-fp32", attention="interleaved"),
         Recipe("graph-pass-fp32", attention="interleaved", graph_pass=True),
         Recipe("int8", int8=True), Recipe("compile-fp32", attention="sdpa", compile=True),
         Recipe("onednn-fp32", attention="interleaved", graph_pass=True, onednn=True),
         Recipe("onednn-int8", attention="interleaved", graph_pass=True, onednn=True, int8=True)]
RECIPES = {r.name: r for r in ladder() + EXTRA}


def get_recipe(recipe: str | Recipe = "baseline", dtype: str | None = None) -> Recipe:
    """A named recipe (a ladder rung or an extra), optionally with its dtype overridden."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    if dtype is not None and DTYPES.get(dtype, dtype) != recipe.dtype:
        recipe = replace(recipe, name=f"{recipe.name}[{DTYPES.get(dtype, dtype)}]", dtype=dtype)
    return recipe
