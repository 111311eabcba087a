"""The ``onednn`` rungs' float32 matmuls on a CPU: all on oneDNN, where it computes them in
float32.

The ``onednn`` rungs (:mod:`bertg4.pt.onednn`) put every Linear on oneDNN with prepacked
weights. What PyTorch's CPU wheel still sends to Intel MKL, as it does every float32
``mm``/``bmm``/``baddbmm``, is attention's two batched GEMMs per layer (scores and context).
PyTorch hands float32 matmuls to oneDNN only when allowed to round their inputs to bfloat16
(``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``). oneDNN's documentation calls that
mode an allowance, not an order. On the 2-core AMD EPYC of the CPU records (AVX-512 with BF16,
no AMX) its kernels computed in float32 all the same, and attention's calls took MKL 1.04-2.5×
oneDNN's time (``results/2026-12-02_cpu_onednn_matmul``). On a CPU whose kernels use the allowance
(those with AMX, as oneDNN documents it) they would round.

The same setting also reaches the rungs' prepacked float32 Linears: PyTorch asks oneDNN's
Linear for bfloat16 math under it too. So :func:`probe` runs the very calls a forward makes,
with the model's hidden size and heads: a prepacked Linear (and its fused GELU) and attention's
scores and context as :func:`bertg4.pt.attention.interleaved_qk` and ``interleaved_valatt``
compute them, and the FFN's Linears at the model's width. Each must stay within float32 rounding of a float64 reference (relative error at
most :data:`TOLERANCE`; inputs rounded to bfloat16 give about 1e-3), and an ``mm`` and a ``bmm``
with hundreds of terms must come out in other bits than the default library's, so that PyTorch
does route float32 matmuls to oneDNN (``tests/test_matmul.py`` reads oneDNN's own log for attention's two GEMMs per
layer). Only then does a predictor
of an ``onednn`` rung on a CPU take the setting, for the duration of each forward
(:func:`onednn_float32`).

The setting is PyTorch's, and so process-wide while a forward runs: matmuls other threads run
meanwhile see it too (and PyTorch's older ``torch.get_float32_matmul_precision()`` raises until
it is restored). Forwards of several threads share one count, so the earlier setting comes back
when the last one ends. The other rungs and the ``hf`` reference never take it.
``BERTG4_ONEDNN_MATMUL=0`` leaves every matmul on PyTorch's default.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import torch

ENV = "BERTG4_ONEDNN_MATMUL"
#: the largest relative error (max |error| / max |exact|) the probe accepts as float32
#: arithmetic: float32 products with hundreds of terms stay near 1e-6; bfloat16 inputs give ~1e-3
TOLERANCE = 1e-5
#: what predictor notes and records say: the setting taken, or not
ONEDNN = "oneDNN (float32)"
DEFAULT = "default"
NOTE = "float32 matmuls: "

_lock = threading.RLock()  # re-entered by probe(), which holds it while it runs forwards' calls
_active = 0          # forwards now inside onednn_float32()
_before = None       # PyTorch's setting before the first of them


def _setting() -> bool:
    value = os.environ.get(ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV}={value!r}: use 1 (the onednn rungs' float32 matmuls on oneDNN where it "
                         "computes them in float32, the default) or 0 (PyTorch's default library)")
    return value == "1"


@contextlib.contextmanager
def _precision(value: str):
    flag = torch.backends.mkldnn.matmul
    before = flag.fp32_precision
    flag.fp32_precision = value
    try:
        yield
    finally:
        flag.fp32_precision = before


@contextlib.contextmanager
def onednn_float32():
    """Let PyTorch hand float32 matmuls to oneDNN for the duration (only where :func:`probe`
    found float32 arithmetic); PyTorch's earlier setting comes back when the last forward that
    took it ends."""
    global _active, _before
    with _lock:
        if _active == 0:
            _before = torch.backends.mkldnn.matmul.fp32_precision
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                torch.backends.mkldnn.matmul.fp32_precision = _before


def onednn_float32_allowed(t: torch.Tensor) -> bool:
    """Whether a float32 CPU tensor's matmuls run inside :func:`onednn_float32` now (then
    attention copies Q and K dense: on strided views the scores GEMM ran no faster under the
    setting than on MKL, ``results/2026-12-02_cpu_onednn_matmul/kernels.txt``)."""
    return _active > 0 and t.device.type == "cpu" and t.dtype == torch.float32


def _rel_err(got: torch.Tensor, exact: torch.Tensor) -> float:
    finite = torch.isfinite(exact)
    if not torch.equal(finite, torch.isfinite(got)):
        return math.inf
    return float((got.double() - exact)[finite].abs().max() / exact[finite].abs().max())


@functools.lru_cache(maxsize=None)
def probe(hidden: int = 768, heads: int = 12, intermediate: int = 3072) -> str | None:
    """None where PyTorch routes float32 ``mm`` and ``bmm`` to oneDNN under the setting (products
    with hundreds of terms come out in other bits than the default library's) and each float32
    call of a forward of a model of ``hidden``, ``heads`` and ``intermediate`` (the FFN's width)
    stays float32 there; otherwise why not. It holds the setting's lock throughout, so no
    forward of another thread starts or ends while it switches PyTorch's setting."""
    with _lock:
        return _probe(hidden, heads, intermediate)


def _probe(hidden: int, heads: int, intermediate: int) -> str | None:
    from .attention import interleaved_qk, interleaved_valatt
    from .onednn import available, linear, linear_gelu
    if not torch.backends.mkldnn.is_available():
        return "this torch has no oneDNN"
    g = torch.Generator().manual_seed(0)
    L, B = 64, 2
    proj = torch.randn(L, B, 3 * hidden, generator=g)
    valid = torch.tensor([L, L // 2 + 3])
    probs = torch.softmax(torch.randn(B * heads, L, L, generator=g), -1)

    def scores(p):
        return interleaved_qk(p, heads, valid)

    def context(p, pr):
        return interleaved_valatt(p, pr, heads)

    cases = {"attention scores": (lambda: scores(proj), lambda: scores(proj.double())),
             "attention context": (lambda: context(proj, probs), lambda: context(proj.double(), probs.double()))}
    if available():
        def prepacked(n_in, n_out, gelu, name):
            x, w, b = (torch.randn(s, generator=g) for s in ((L * B, n_in), (n_out, n_in), (n_out,)))
            packed = torch.ops.mkldnn._reorder_linear_weight(w)  # as at build time: outside the setting

            def exact():
                y = x.double() @ w.double().t() + b.double()
                return 0.5 * y * (1 + torch.erf(y / math.sqrt(2))) if gelu else y
            cases[name] = (lambda: (linear_gelu if gelu else linear)(x, packed, b), exact)
        prepacked(hidden, 3 * hidden, False, "prepacked Linear (QKV)")
        prepacked(hidden, intermediate, True, "prepacked Linear+GELU (FFN in)")
        prepacked(intermediate, hidden, False, "prepacked Linear (FFN out)")
    # whether PyTorch routes float32 mm and bmm to oneDNN under the setting at all: products with
    # hundreds of terms come out in other bits from another library (attention's shorter ones
    # can match bit for bit, so they cannot show it)
    routing = {"mm": (torch.matmul, (L * B, hidden), (hidden, hidden)),
               "bmm": (torch.bmm, (B * heads, 4 * L, 4 * L), (B * heads, 4 * L, hidden // heads))}
    for what, (op, sa, sb) in routing.items():
        a, b = torch.randn(sa, generator=g), torch.randn(sb, generator=g)
        with _precision("ieee"):
            default = op(a, b)
        with onednn_float32():
            routed = not torch.equal(op(a, b), default)
        if not routed:
            return f"this torch keeps float32 {what} on its default library here even when allowed"
    for what, (run, exact) in cases.items():
        try:
            with onednn_float32():
                got = run()
        except RuntimeError as e:
            return f"with bfloat16 allowed, oneDNN fails on {what}: {e}"
        err = _rel_err(got, exact())
        if not err <= TOLERANCE:
            return (f"with bfloat16 allowed, oneDNN rounds float32 {what} on this CPU (relative error "
                    f"{err:.1e}, above {TOLERANCE:.0e})")
    return None


def choice(device: torch.device, hidden: int = 768, heads: int = 12, intermediate: int = 3072) -> str | None:
    """For an ``onednn`` predictor on ``device``: :data:`ONEDNN` when its forwards run inside
    :func:`onednn_float32`, else None. Raises on a bad ``BERTG4_ONEDNN_MATMUL``."""
    if device.type != "cpu" or not _setting():
        return None
    return ONEDNN if probe(hidden, heads, intermediate) is None else None


def note(device: torch.device, chosen: str | None, hidden: int = 768, heads: int = 12,
         intermediate: int = 3072) -> str | None:
    """The predictor note saying which library runs its float32 matmuls (None off a CPU)."""
    if device.type != "cpu":
        return None
    if chosen:
        return NOTE + chosen + " (checked here to compute in float32; " + ENV + "=0 for PyTorch's default)"
    if not _setting():
        return NOTE + f"PyTorch's default library ({ENV}=0)"
    return NOTE + "PyTorch's default library: " + (probe(hidden, heads, intermediate) or "")


def label(predictor) -> str | None:
    """What records and served metadata say in ``float32_matmul``: :data:`ONEDNN` or
    :data:`DEFAULT` for a ``pt``/``hf`` predictor on a CPU, None for other engines and devices."""
    device = str(getattr(predictor, "device", ""))
    if not device.startswith("cpu") or getattr(predictor, "engine", None) not in ("pt", "hf"):
        return None
    return getattr(predictor, "float32_matmul", None) or DEFAULT
