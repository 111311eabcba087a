"""Padding modes: how much of a batch is padding, and how bulk inference avoids computing it.

* ``fixed`` -- every row padded to ``seq_length``: the article's fixed shapes, what the
  ladder and the latency-vs-batch figures use.
* ``longest`` -- rows sorted by length (:func:`length_batches`) and each batch padded only
  to its longest row (:func:`trim`), rounded up by the engine's ``padded_length``.
* ``packed`` -- no padding in the token-wise layers: a batch's valid tokens are
  concatenated (``total_tokens x hidden``, cumulative offsets per row) and only attention
  works per sequence. PyTorch engine only.

Every mode gives the outputs ``fixed`` gives, row for row (``tests/test_padding.py``).
"""
from __future__ import annotations

import numpy as np

from .text import Batch, check_batch_size

MODES = ("fixed", "longest", "packed")


def check_padding(mode) -> str:
    """``mode`` if it is one of :data:`MODES`; a ``ValueError`` naming it and the choices otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown padding {mode!r}: choose one of {', '.join(MODES)}")
    return mode


def length_batches(valid_length, batch_size: int) -> list[np.ndarray]:
    """Row indices sorted by length (stable: equal lengths keep their order), cut into
    batches of at most ``batch_size`` rows."""
    batch_size = check_batch_size(batch_size)
    order = np.argsort(np.asarray(valid_length), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def trim(batch: Batch, length: int) -> Batch:
    """``batch`` cut to its first ``length`` columns; every row must fit."""
    length = int(length)
    if len(batch) and int(batch.valid_length.max()) > length:
        raise ValueError(f"cannot trim to {length} columns: a row has {int(batch.valid_length.max())} "
                         "valid tokens")
    if not 1 <= length <= batch.seq_len:
        raise ValueError(f"trim length {length} must lie in [1, {batch.seq_len}]")
    if length == batch.seq_len:
        return batch
    return Batch(batch.input_ids[:, :length], batch.token_types[:, :length], batch.valid_length,
                 batch.truncated)


def padding_waste(valid_length, computed_tokens: int) -> float:
    """Computed tokens per real token (1.0: no padding computed)."""
    real = int(np.asarray(valid_length).sum())
    if real < 1:
        raise ValueError("padding_waste needs at least one real token")
    return float(computed_tokens) / real
