"""Three self-attention layouts, one set of weights (``query``, ``key``, ``value``, ``out``).

* ``naive`` -- textbook: three projections, heads split by reshape/transpose copies,
  ``(batch, seq, hidden)`` layout.
* ``interleaved`` -- the layout of MXNet's ``interleaved_matmul_selfatt_qk/valatt``:
  input ``(seq, batch, hidden)``, ONE projection whose weight rows are interleaved per head
  ``[q_0; k_0; v_0; q_1; ...]``, so the projected tensor ``(seq, batch, heads*3*d)`` holds
  each head's q, k and v side by side. Q, K and V are never copied apart: strided views
  of that tensor feed batched GEMMs directly (:func:`interleaved_qk`,
  :func:`interleaved_valatt`), and the softmax is masked by ``valid_length`` inside
  :func:`masked_softmax`. Without the graph pass the interleaved weight is rebuilt from
  the three projections on every call, as GluonNLP does; the pass prearranges it once.
* ``sdpa`` -- PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
  kernels on a GPU), for comparison.
"""
from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import numerics


def interleave_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows ``[q_0; k_0; v_0; q_1; k_1; v_1; ...]`` (weights ``(H, in)`` or biases ``(H,)``)."""
    h = q.shape[0]
    return torch.stack([t.reshape(heads, h // heads, *t.shape[1:]) for t in (q, k, v)], dim=1) \
        .reshape(3 * h, *q.shape[1:])


def _head_view(proj: torch.Tensor, heads: int, which: int) -> torch.Tensor:
    """Q (0), K (1) or V (2) of every (batch, head) as a ``(batch*heads, seq, d)`` strided view."""
    L, B, H3 = proj.shape
    d = H3 // (3 * heads)
    # element (b, h, l, j) sits at l*B*H3 + b*H3 + h*3d + which*d + j, and b*H3 + h*3d = (b*heads + h)*3d
    return proj.as_strided((B * heads, L, d), (3 * d, B * H3, 1), proj.storage_offset() + which * d)


def interleaved_qk(proj: torch.Tensor, heads: int) -> torch.Tensor:
    """Scores ``Q K^T / sqrt(d)``, ``(batch*heads, seq, seq)``, from the interleaved projection."""
    if not proj.is_contiguous():
        proj = proj.contiguous()
    q, k = _head_view(proj, heads, 0), _head_view(proj, heads, 1)
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=proj.dtype, device=proj.device)
    return torch.baddbmm(out, q, k.transpose(1, 2), beta=0.0, alpha=scale)


def interleaved_valatt(proj: torch.Tensor, probs: torch.Tensor, heads: int) -> torch.Tensor:
    """Context ``probs @ V`` back in ``(seq, batch, hidden)`` layout."""
    if not proj.is_contiguous():
        proj = proj.contiguous()
    L, B, H3 = proj.shape
    ctx = torch.bmm(probs, _head_view(proj, heads, 2))  # (B*heads, L, d)
    return ctx.view(B, heads, L, -1).permute(2, 0, 1, 3).reshape(L, B, H3 // 3)


def masked_softmax(scores: torch.Tensor, valid_length: torch.Tensor, heads: int,
                   safe: bool = True) -> torch.Tensor:
    """Softmax over keys ``< valid_length`` of each row (``scores``: ``(batch*heads, q, k)``)."""
    keys = torch.arange(scores.shape[-1], device=scores.device)
    keep = keys[None, None, :] < valid_length.repeat_interleave(heads)[:, None, None]
    return numerics.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1, safe=safe)


def train_dropout(module: nn.Module, x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout for fine-tuning only: a Python branch, so an eval-mode module (everything served,
    traced by the graph pass or exported) computes exactly what it would without it."""
    return F.dropout(x, p) if module.training and p else x


# graph-pass and node-count friendly: each is one node in a torch.fx graph, like MXNet's operators
for _name in ("interleave_qkv", "interleaved_qk", "interleaved_valatt", "masked_softmax"):
    torch.fx.wrap(_name)


class SelfAttention(nn.Module):
    """Base: the four projections every layout loads from the same canonical weights."""

    layout = "batch_first"

    def __init__(self, hidden: int, heads: int, safe: bool = True, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.head_dim, self.safe = heads, hidden // heads, safe
        self.dropout = dropout  # on the attention probabilities, in training mode only
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), \
            nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _drop(self, probs: torch.Tensor) -> torch.Tensor:
        return train_dropout(self, probs, self.dropout)


class NaiveSelfAttention(SelfAttention):
    def forward(self, x, valid_length, key_mask):
        b, L, h = x.shape

        def split(t):  # (b, L, h) -> (b, heads, L, d)
            return t.view(b, L, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        probs = self._drop(numerics.softmax(scores, dim=-1, safe=self.safe))
        return self.out(torch.matmul(probs, v).transpose(1, 2).reshape(b, L, h))


class InterleavedSelfAttention(SelfAttention):
    layout = "seq_first"

    def forward(self, x, valid_length, key_mask):  # x: (L, B, H)
        heads = self.num_heads
        weight = interleave_qkv(self.query.weight, self.key.weight, self.value.weight, heads)
        bias = interleave_qkv(self.query.bias, self.key.bias, self.value.bias, heads)
        proj = F.linear(x, weight, bias)  # (L, B, 3H), one GEMM
        probs = self._drop(masked_softmax(interleaved_qk(proj, heads), valid_length, heads, self.safe))
        return self.out(interleaved_valatt(proj, probs, heads))


class SdpaSelfAttention(SelfAttention):
    def forward(self, x, valid_length, key_mask):
        b, L, h = x.shape

        def split(t):
            return t.view(b, L, self.num_heads, self.head_dim).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                             split(self.value(x)), attn_mask=key_mask[:, None, None, :],
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(ctx.transpose(1, 2).reshape(b, L, h))


ATTENTION = {"naive": NaiveSelfAttention, "interleaved": InterleavedSelfAttention,
             "sdpa": SdpaSelfAttention}
