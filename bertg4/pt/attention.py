"""Three self-attention layouts, one set of weights (``query``, ``key``, ``value``, ``out``).

* ``naive`` -- textbook: three projections, heads split by reshape/transpose copies,
  ``(batch, seq, hidden)`` layout.
* ``interleaved`` -- the layout of MXNet's ``interleaved_matmul_selfatt_qk/valatt``:
  input ``(seq, batch, hidden)``, ONE projection whose weight rows are interleaved per head
  ``[q_0; k_0; v_0; q_1; ...]``, so the projected tensor ``(seq, batch, heads*3*d)`` holds
  each head's q, k and v side by side. Q, K and V are not copied apart: strided views
  of that tensor feed batched GEMMs directly (:func:`interleaved_qk`,
  :func:`interleaved_valatt`; only where a forward runs float32 matmuls on oneDNN,
  :mod:`bertg4.pt.matmul`, are Q and K copied dense, which ran faster there), and the scores GEMM itself masks keys past ``valid_length``
  (adding a row of 0 / ``-inf``) before the softmax. Without the graph pass the interleaved weight is rebuilt from
  the three projections on every call, as GluonNLP does; the pass prearranges it once.
* ``sdpa`` -- PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
  kernels on a GPU), for comparison.

**Packed inputs** (``padding="packed"``): every layout also takes ``x`` as the valid tokens
of a batch concatenated, ``(total_tokens, hidden)``, with ``pack = (index, rows, length, grid)``:
where each token sits in the flattened padded grid of the layout (``(rows, length)``
batch-first, ``(length, rows)`` seq-first), and which token each grid slot holds. The projections run on the packed tokens; only
attention itself re-pads them (:func:`pad_tokens`) and packs its context again
(:func:`unpad_tokens`). On a CPU this re-padding was chosen by measurement over SDPA on
jagged nested tensors: in interleaved, repeated timings of MiniLM-sized attention (32 rows,
12 heads, sorted and mixed lengths) the nested-tensor path (a per-sequence math fallback on
CPU) was about an order of magnitude slower. On a CUDA GPU the ``sdpa`` layout runs
``torch.nn.attention.varlen.varlen_attn`` (FlashAttention's varlen kernel) on the packed
tokens directly where torch has it and the dtype is float16/bfloat16, and re-pads otherwise.
"""
from __future__ import annotations

import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import numerics
from .matmul import onednn_float32_allowed


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


def key_mask_bias(valid_length: torch.Tensor, heads: int, keys: int, dtype: torch.dtype) -> torch.Tensor:
    """``(batch*heads, 1, keys)``: 0 for keys ``< valid_length`` of the row, ``-inf`` past it."""
    past = torch.arange(keys, device=valid_length.device)[None, None, :] >= \
        valid_length.repeat_interleave(heads)[:, None, None]
    return torch.zeros(past.shape, dtype=dtype, device=valid_length.device).masked_fill_(past, float("-inf"))


def interleaved_qk(proj: torch.Tensor, heads: int, valid_length: torch.Tensor | None = None) -> torch.Tensor:
    """Scores ``Q K^T / sqrt(d)``, ``(batch*heads, seq, seq)``, from the interleaved projection.

    With ``valid_length``, keys past each row's length score ``-inf``: the GEMM adds the
    :func:`key_mask_bias` row to its output (``baddbmm`` with ``beta=1``) instead of a second
    pass over the scores (``masked_fill``): at BERT-base's batch-8 shapes on a 2-core CPU,
    1.7-2.2× faster (``results/2026-11-29_cpu_onednn_int8_vs_ort/kernels.txt``). Where float32
    matmuls run on oneDNN (:mod:`bertg4.pt.matmul`: a forward of an ``onednn`` rung on a CPU, float32),
    Q and K are copied apart first: on strided views the GEMM ran no faster there than on MKL
    (``results/2026-12-02_cpu_onednn_matmul/kernels.txt``). Adding 0 leaves
    every finite score as it was. A masked key's score is ``-inf`` plus its product, so a
    product that overflowed to ``+inf`` or ``nan`` there gives ``nan`` (``masked_fill`` would
    have hidden it); an unmasked one breaks the row either way."""
    if not proj.is_contiguous():
        proj = proj.contiguous()
    q, k = _head_view(proj, heads, 0), _head_view(proj, heads, 1)
    if onednn_float32_allowed(proj):  # two small copies, for oneDNN's faster GEMM on dense Q and K
        q, k = q.contiguous(), k.contiguous()
    scale = 1.0 / math.sqrt(q.shape[-1])
    if valid_length is not None:
        return torch.baddbmm(key_mask_bias(valid_length, heads, k.shape[1], proj.dtype), q, k.transpose(1, 2),
                             alpha=scale)
    out = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=proj.dtype, device=proj.device)
    return torch.baddbmm(out, q, k.transpose(1, 2), beta=0.0, alpha=scale)


def interleaved_valatt(proj: torch.Tensor, probs: torch.Tensor, heads: int) -> torch.Tensor:
    """Context ``probs @ V`` back in ``(seq, batch, hidden)`` layout."""
    if not proj.is_contiguous():
        proj = proj.contiguous()
    L, B, H3 = proj.shape
    ctx = torch.bmm(probs, _head_view(proj, heads, 2))  # (B*heads, L, d)
    return ctx.view(B, heads, L, -1).permute(2, 0, 1, 3).reshape(L, B, H3 // 3)


def grid_map(index: torch.Tensor, slots: int) -> torch.Tensor:
    """For each of ``slots`` grid slots, the packed token it holds (token 0 where none)."""
    return index.new_zeros(slots).index_copy(0, index, torch.arange(index.shape[0], device=index.device))


def pad_tokens(t: torch.Tensor, pack) -> torch.Tensor:
    """Packed ``(total_tokens, n)`` -> the padded grid ``(a, b, n)`` of ``pack = (index, a, b,
    grid)`` (``grid`` from :func:`grid_map`): one gather. Slots without a token hold a copy
    of token 0, which the key mask hides and nobody reads back."""
    _, a, b, grid = pack
    return t.index_select(0, grid).view(a, b, t.shape[-1])


def unpad_tokens(t: torch.Tensor, pack) -> torch.Tensor:
    """The padded grid ``(a, b, n)`` -> its valid tokens ``(total_tokens, n)``, packed again."""
    return t.reshape(-1, t.shape[-1]).index_select(0, pack[0])


def varlen_kernel(dtype: torch.dtype, device_type: str) -> bool:
    """Whether this torch has FlashAttention's varlen kernel for ``dtype`` on ``device_type``."""
    if device_type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        return False
    import importlib.util
    return importlib.util.find_spec("torch.nn.attention.varlen") is not None


def varlen_available(t: torch.Tensor) -> bool:
    return varlen_kernel(t.dtype, t.device.type)


def train_dropout(module: nn.Module, x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout for fine-tuning only: a Python branch, so an eval-mode module (everything served,
    traced by the graph pass or exported) computes exactly what it would without it."""
    return F.dropout(x, p) if module.training and p else x


# graph-pass and node-count friendly: each is one node in a torch.fx graph, like MXNet's operators
for _name in ("interleave_qkv", "interleaved_qk", "interleaved_valatt"):
    torch.fx.wrap(_name)


class SelfAttention(nn.Module):
    """Base: the four projections every layout loads from the same canonical weights."""

    layout = "batch_first"

    def __init__(self, hidden: int, heads: int, safe: bool = True, dropout: float = 0.0,
                 max_len: int = 512):
        super().__init__()
        self.num_heads, self.head_dim, self.safe = heads, hidden // heads, safe
        self.max_len = max_len  # the longest sequence (the fp16 reductions' static width)
        self.dropout = dropout  # on the attention probabilities, in training mode only
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), \
            nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _drop(self, probs: torch.Tensor) -> torch.Tensor:
        return train_dropout(self, probs, self.dropout)


class NaiveSelfAttention(SelfAttention):
    def forward(self, x, valid_length, key_mask, pack=None):
        q, k, v = self.query(x), self.key(x), self.value(x)
        if pack is not None:  # (tokens, h) -> (b, L, h)
            q, k, v = pad_tokens(q, pack), pad_tokens(k, pack), pad_tokens(v, pack)
        b, L, h = q.shape

        def split(t):  # (b, L, h) -> (b, heads, L, d)
            return t.view(b, L, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        probs = self._drop(numerics.softmax(scores, dim=-1, safe=self.safe, max_width=self.max_len))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, L, h)
        return self.out(ctx if pack is None else unpad_tokens(ctx, pack))


class InterleavedSelfAttention(SelfAttention):
    layout = "seq_first"

    def forward(self, x, valid_length, key_mask, pack=None):  # x: (L, B, H), or packed (tokens, H)
        heads = self.num_heads
        weight = interleave_qkv(self.query.weight, self.key.weight, self.value.weight, heads)
        bias = interleave_qkv(self.query.bias, self.key.bias, self.value.bias, heads)
        proj = F.linear(x, weight, bias)  # (L, B, 3H), one GEMM
        if pack is not None:
            proj = pad_tokens(proj, pack)
        scores = interleaved_qk(proj, heads, valid_length)  # keys past valid_length: -inf
        probs = self._drop(numerics.softmax(scores, dim=-1, safe=self.safe, max_width=self.max_len))
        ctx = interleaved_valatt(proj, probs, heads)
        return self.out(ctx if pack is None else unpad_tokens(ctx, pack))


class SdpaSelfAttention(SelfAttention):
    def forward(self, x, valid_length, key_mask, pack=None):
        dropout = self.dropout if self.training else 0.0
        q, k, v = self.query(x), self.key(x), self.value(x)
        if pack is not None and not dropout and varlen_available(x):
            return self.out(self._varlen(q, k, v, valid_length, pack))
        if pack is not None:
            q, k, v = pad_tokens(q, pack), pad_tokens(k, pack), pad_tokens(v, pack)
        b, L, h = q.shape

        def split(t):
            return t.view(b, L, self.num_heads, self.head_dim).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(split(q), split(k), split(v),
                                             attn_mask=key_mask[:, None, None, :], dropout_p=dropout)
        ctx = ctx.transpose(1, 2).reshape(b, L, h)
        return self.out(ctx if pack is None else unpad_tokens(ctx, pack))

    def _varlen(self, q, k, v, valid_length, pack):
        """FlashAttention varlen on the packed tokens: no padding at all (CUDA)."""
        from torch.nn.attention.varlen import varlen_attn
        T, h = q.shape
        cu = F.pad(torch.cumsum(valid_length, 0), (1, 0)).to(torch.int32)
        L = pack[2]

        def heads(t):
            return t.view(T, self.num_heads, self.head_dim)

        return varlen_attn(heads(q), heads(k), heads(v), cu, cu, L, L).reshape(T, h)


ATTENTION = {"naive": NaiveSelfAttention, "interleaved": InterleavedSelfAttention,
             "sdpa": SdpaSelfAttention}
