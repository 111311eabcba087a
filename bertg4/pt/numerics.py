"""Where precision is spent: safe vs unsafe fp16 reductions, fp16 GEMM accumulation.

* **Safe accumulation** (``MXNET_SAFE_ACCUMULATION=1``): softmax and LayerNorm read
  fp16 values and reduce them in fp32. PyTorch's own ``softmax`` and ``layer_norm``
  kernels already do this, so they *are* the safe path here.
* **Unsafe accumulation**: the reductions really run in fp16. :func:`fp16_sum` adds
  pairwise with every partial sum rounded to fp16, so a LayerNorm variance over large
  residuals overflows to inf (fp16's largest value is 65504) and a softmax denominator
  loses precision, exactly the failures safe accumulation exists to prevent.
* **True FP16** (``MXNET_FC_TRUE_FP16=1``): GEMMs accumulate in fp16 instead of fp32.
  On a GPU, :func:`fp16_accumulation` flips cuBLAS to fp16 accumulation for the duration
  of a call; on a CPU, :func:`emulated_fp16_matmul` *emulates* it (partial sums rounded
  to fp16 after every ``chunk`` products) so the numerical effect can be shown anywhere.
"""
from __future__ import annotations

import contextlib

import torch
import torch.fx
import torch.nn.functional as F


def fp16_sum(x: torch.Tensor, dim: int = -1, keepdim: bool = False,
             max_width: int | None = None) -> torch.Tensor:
    """Sum along ``dim`` with an fp16 accumulator: pairwise adds, each result rounded to fp16.

    The tree's width is the next power of two of the length. A length that is symbolic
    (``torch.export`` with a dynamic sequence length) has no such number while tracing, so
    the tree is then as wide as the next power of two of ``max_width`` (the longest
    sequence): the extra leaves are zeros, and adding an exact fp16 zero changes no partial
    sum, so both widths give the same bits.
    """
    if x.dtype != torch.float16:
        raise TypeError(f"fp16_sum takes float16 input, got {x.dtype}")
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    if isinstance(n, int):
        width = 1 << max(0, (n - 1).bit_length())
        if width != n:
            x = F.pad(x, (0, width - n))
    else:  # no comparison with n: it would specialize the traced length
        if max_width is None:
            raise ValueError("fp16_sum over a symbolic length needs max_width")
        torch._check(n <= max_width)
        x = F.pad(x, (0, (1 << max(0, (max_width - 1).bit_length())) - n))
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]  # each add is an fp16 op: its result is rounded to fp16
    out = x[..., 0]
    return out.unsqueeze(dim) if keepdim else out


def layer_norm(x, weight, bias, eps: float, safe: bool = True) -> torch.Tensor:
    """LayerNorm over the last dimension; ``safe=False`` with fp16 input reduces in fp16."""
    if safe or x.dtype != torch.float16:
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
    n = x.shape[-1]
    mean = fp16_sum(x, keepdim=True) / n
    diff = x - mean
    var = fp16_sum(diff * diff, keepdim=True) / n  # overflows to inf when the sum passes 65504
    return diff * torch.rsqrt(var + eps) * weight + bias


def softmax(x: torch.Tensor, dim: int = -1, safe: bool = True, max_width: int = 512) -> torch.Tensor:
    """Softmax; ``safe=False`` with fp16 input sums the exponentials in fp16 (over at most
    ``max_width`` keys when the length is symbolic, see :func:`fp16_sum`)."""
    if safe or x.dtype != torch.float16:
        return torch.softmax(x, dim=dim)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / fp16_sum(e, dim=dim, keepdim=True, max_width=max_width)


# one node each in a torch.fx graph (their precision branch is not traced through)
torch.fx.wrap("layer_norm")
torch.fx.wrap("softmax")


class LayerNorm(torch.nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters) whose reduction precision follows the recipe."""

    def __init__(self, hidden: int, eps: float, safe: bool = True):
        super().__init__(hidden, eps=eps)
        self.safe = safe

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self.eps, self.safe)


@contextlib.contextmanager
def fp16_accumulation(enabled: bool = True):
    """cuBLAS GEMMs accumulate in fp16 inside the block; the previous setting always returns."""
    backend = torch.backends.cuda.matmul
    if not hasattr(backend, "allow_fp16_accumulation"):
        raise RuntimeError(f"torch {torch.__version__} has no allow_fp16_accumulation (needs >= 2.7)")
    previous = backend.allow_fp16_accumulation
    backend.allow_fp16_accumulation = enabled
    try:
        yield
    finally:
        backend.allow_fp16_accumulation = previous


def emulated_fp16_matmul(a: torch.Tensor, b: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """EMULATION of an fp16-accumulating GEMM ``a @ b`` on any device.

    Products are formed exactly (in fp32) ``chunk`` inner-dimension terms at a time
    and added into an fp16 accumulator, which is rounded to fp16 after every step.
    ``chunk=1`` models a strict fp16 multiply-add chain; tensor cores add small
    blocks in higher precision first, which a larger ``chunk`` approximates.
    """
    a32, b32 = a.float(), b.float()
    k = a32.shape[-1]
    if b32.shape[-2] != k:
        raise ValueError(f"inner dimensions differ: {tuple(a.shape)} @ {tuple(b.shape)}")
    acc = torch.zeros(a32.shape[:-1] + b32.shape[-1:], dtype=torch.float16, device=a.device)
    for start in range(0, k, chunk):
        part = a32[..., start:start + chunk] @ b32[..., start:start + chunk, :]
        acc = (acc.float() + part).half()
    return acc
