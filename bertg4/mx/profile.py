"""Operator times of one MXNet forward pass, from MXNet's own profiler (aggregate stats).

``bertg4.profile`` (``bertg4 profile --engine mx``) sorts them into the same categories as
the PyTorch engine's; this module only collects them.
"""
from __future__ import annotations

import json
import os
import tempfile

from ..system import scoped_environ
from .compat import import_mxnet

mx, _ = import_mxnet()

#: engine bookkeeping, not work of the model
BULK = "MXNET_EXEC_BULK_EXEC_INFERENCE"
SKIP = {"WaitForVar", "DeleteVariable", "DeleteOperator", "CopyCPU2CPU"}


def op_times(predictor, batch, repeats: int = 3) -> list[tuple[str, float, int]]:
    """``(operator, total ms over the repeats, calls)`` for ``repeats`` profiled forwards.

    Warm-up (shape inference, memory planning, oneDNN primitive creation) runs first and
    is not profiled.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    staged = predictor.prepare(batch)
    # a static CachedOp runs its operators in bulk segments, which the profiler reports as one
    # entry ("elemwise_add,transpose,..."): rebuild it without bulking for the profiled runs
    try:
        with scoped_environ({BULK: "0"}):
            predictor.block.hybridize(static_alloc=True, static_shape=True)
            return _profile(predictor, staged, repeats)
    finally:
        predictor.block.hybridize(static_alloc=True, static_shape=True)  # bulking back on


def _profile(predictor, staged, repeats):
    for _ in range(2):
        predictor.run(staged)
    mx.nd.waitall()
    with tempfile.TemporaryDirectory(prefix="bertg4-mxprof-") as folder:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=os.path.join(folder, "profile.json"))
        mx.profiler.set_state("run")
        try:
            for _ in range(repeats):
                predictor.run(staged)
            mx.nd.waitall()
        finally:
            mx.profiler.set_state("stop")
        stats = json.loads(mx.profiler.dumps(reset=True, format="json"))
    ops = stats.get("Time", {}).get("operator", {})
    if not ops:
        raise RuntimeError("MXNet's profiler recorded no operator times (is this build's profiler "
                           "enabled? mx.runtime.Features())")
    return sorted(((name, float(v["Total"]), int(v["Count"])) for name, v in ops.items()
                   if name not in SKIP), key=lambda t: -t[1])
