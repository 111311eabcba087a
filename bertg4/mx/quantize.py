"""INT8 on a CPU with MXNet's oneDNN quantization, calibrated on real inputs.

The article's CPU comparison (c5 instances) ran BERT in INT8. ``quantize_net_v2`` rewrites
the float32 graph for the ``MKLDNN_QUANTIZE`` backend: FullyConnected layers (and the
batched GEMMs oneDNN can take) become INT8 kernels, with ``quantize_v2`` / ``dequantize``
nodes at the edges. Calibration (``calib_mode="naive"``) runs the float32 model on the
calibration batch and records each quantized tensor's min/max, so the scales are fixed at
build time rather than computed per call.

Two choices keep the answers: weights are quantized per output channel, and the residual
adds and embeddings stay float32 (``exclude_operators``). With MXNet's defaults (per-tensor
scales, everything quantized) the embedded MiniLM's sentence embeddings fell to a mean
cosine similarity of 0.60 with float32's on 64 SST-2 dev sentences, with these choices 0.98
(``tests/test_mx.py`` measures the current choices on the same sentences).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..text import Batch
from .compat import import_mxnet

mx, _ = import_mxnet()


def quantize_block(block, calibration: Batch, ctx, batch_size: int = 8):
    """The INT8 ``SymbolBlock`` of a float32 hybridized block, calibrated on ``calibration``."""
    from mxnet.contrib import quantization
    if len(calibration) == 0:
        raise ValueError("INT8 calibration needs at least one input sequence")
    arrays = [np.asarray(calibration.input_ids, np.float32), np.asarray(calibration.token_types, np.float32),
              np.asarray(calibration.valid_length, np.float32)]
    loader = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(*arrays),
                                      batch_size=min(batch_size, len(calibration)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Cannot decide type.*")
        qnet = quantization.quantize_net_v2(
            block, quantized_dtype="auto", quantize_mode="full", quantize_granularity="channel-wise",
            exclude_operators=["elemwise_add", "Embedding"], calib_data=loader,
            calib_mode="naive", num_calib_examples=len(calibration), ctx=ctx)
    qnet.hybridize(static_alloc=True, static_shape=True)
    return qnet
