"""Which library runs the float32 matmuls of the ``onednn`` rungs on a CPU: oneDNN, where it
computes them in float32, instead of PyTorch's default BLAS.

The ``onednn`` rungs (:mod:`bertg4.pt.onednn`) put every Linear on oneDNN with prepacked
weights. What is left in float32 is attention's two batched GEMMs (scores and context), which
PyTorch's CPU wheel sends to Intel MKL like every float32 ``mm``/``bmm``/``baddbmm``. PyTorch
hands float32 matmuls to oneDNN only when allowed to round their inputs to bfloat16
(``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``). oneDNN takes that as a permission,
not an order: its kernels for CPUs without AMX compute in float32 all the same (its verbose
log names ``brg_matmul:avx512_core`` with ``attr-fpmath:bf16``), where on a CPU with AMX they
would round to bfloat16. On the AMD EPYC of the CPU records oneDNN ran those GEMMs in about
half MKL's time (``results/2026-12-02_cpu_onednn_matmul``).

So a predictor of an ``onednn`` rung allows it only where :func:`probe` finds float32
arithmetic: products of the model's shapes (a Linear's, attention's two) computed with the
permission stay within float32 rounding of a float64 reference (relative error at most
:data:`TOLERANCE`; bfloat16 inputs give about 1e-3) and differ from the default library's (so
oneDNN did run them). It is given for the duration of each forward (:func:`onednn_float32`) and
taken back after it: the caller's own matmuls, the other rungs and the ``hf`` reference keep
PyTorch's default. ``BERTG4_ONEDNN_MATMUL=0`` leaves every matmul on the default library.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch

ENV = "BERTG4_ONEDNN_MATMUL"
#: the largest relative error (max |error| / max |exact|) the probe accepts as float32
#: arithmetic: float32 products with 768 terms stay near 1e-6; bfloat16 inputs give ~1e-3
TOLERANCE = 1e-5
#: what predictor notes and records say when the permission is given
ONEDNN = "oneDNN (float32)"
NOTE = "float32 matmuls: "


def _setting() -> bool:
    value = os.environ.get(ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV}={value!r}: use 1 (float32 matmuls on oneDNN where it computes them in float32, "
                         "the default) or 0 (PyTorch's default library)")
    return value == "1"


@contextlib.contextmanager
def onednn_float32():
    """Allow PyTorch to hand float32 matmuls to oneDNN for the duration (see the module's text:
    only where :func:`probe` found float32 arithmetic); the earlier setting is restored."""
    flag = torch.backends.mkldnn.matmul
    before = flag.fp32_precision
    flag.fp32_precision = "bf16"
    try:
        yield
    finally:
        flag.fp32_precision = before


def onednn_float32_allowed() -> bool:
    """Whether float32 matmuls may go to oneDNN now (inside :func:`onednn_float32`)."""
    return torch.backends.mkldnn.matmul.fp32_precision == "bf16"


@functools.lru_cache(maxsize=None)
def probe() -> str | None:
    """None where, with the permission, oneDNN computes this CPU's float32 matmuls in float32
    and differs from the default library (so it does run them); otherwise why not."""
    if not torch.backends.mkldnn.is_available():
        return "this torch has no oneDNN"
    g = torch.Generator().manual_seed(0)
    cases = {"Linear 128x768 by 768x768": ((128, 768), (768, 768)),
             "attention scores 12x128x64 by 12x64x128": ((12, 128, 64), (12, 64, 128)),
             "attention context 12x128x128 by 12x128x64": ((12, 128, 128), (12, 128, 64))}
    moved = False
    for what, (sa, sb) in cases.items():
        a, b = torch.randn(sa, generator=g), torch.randn(sb, generator=g)
        exact = torch.matmul(a.double(), b.double())
        default = torch.matmul(a, b)
        with onednn_float32():
            got = torch.matmul(a, b)
        err = float((got.double() - exact).abs().max() / exact.abs().max())
        if not err <= TOLERANCE:
            return (f"with bfloat16 allowed, oneDNN rounds float32 matmuls on this CPU ({what}: relative "
                    f"error {err:.1e}, above {TOLERANCE:.0e})")
        moved = moved or not torch.equal(got, default)
        # the default library's own rounding, for the note a user reads: both near 1e-7
    if not moved:
        return "this torch keeps float32 matmuls on its default library here even when allowed"
    return None


def choice(device: torch.device) -> str | None:
    """For a ``pt`` predictor on ``device``: :data:`ONEDNN` when its forward runs inside
    :func:`onednn_float32`, else None. Raises on a bad ``BERTG4_ONEDNN_MATMUL``."""
    if device.type != "cpu" or not _setting():
        return None
    return ONEDNN if probe() is None else None


def note(device: torch.device, chosen: str | None) -> str | None:
    """The predictor note saying which library runs float32 matmuls (None off a CPU)."""
    if device.type != "cpu":
        return None
    if chosen:
        return NOTE + chosen + " (checked here to compute in float32; " + ENV + "=0 for PyTorch's default)"
    if not _setting():
        return NOTE + f"PyTorch's default library ({ENV}=0)"
    return NOTE + "PyTorch's default library: " + (probe() or "")

