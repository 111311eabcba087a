"""Two kernel choices of this record, timed alone (two threads, median of 50 calls):

1. an INT8 Linear's input quantization: PyTorch's ``quantize_per_tensor_dynamic`` then
   ``int_repr`` (reads the tensor for its minimum, again for its maximum, quantizes, copies
   the codes out) against ``bertg4.pt.onednn.quantize_input`` (``aminmax`` in one pass, one
   quantizing copy, the codes read in place), at the inputs of BERT-base's Linears;
2. interleaved attention's scores for BERT-base at batch 8 (seq 128, 12 heads, SST-2 dev
   lengths): the scores GEMM then ``masked_fill`` over them (before) against the scores GEMM
   adding the key mask itself (``interleaved_qk(proj, heads, valid_length)``, now).

    python results/2026-11-29_cpu_onednn_int8_vs_ort/kernels.py > results/2026-11-29_cpu_onednn_int8_vs_ort/kernels.txt
"""
import warnings

import torch

from bertg4 import bench
from bertg4.pt.attention import interleaved_qk
from bertg4.pt.onednn import quantize_input

warnings.filterwarnings("ignore")
torch.manual_seed(0)
torch.set_num_threads(2)


def median_ms(f, n=50):
    return bench.median_ms(f, n)


def pytorch_dynamic(x):
    q = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)
    return q.int_repr(), q.q_scale(), q.q_zero_point()


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per call, median of 50")
print("\n1. input quantization (rows x features): PyTorch dynamic + int_repr | quantize_input | ratio")
for shape in ((128, 768), (128, 3072), (1024, 768), (1024, 3072)):
    x = torch.randn(*shape)
    a, b = pytorch_dynamic(x), quantize_input(x)
    assert torch.equal(a[0], b[0]) and a[2] == b[2], "the two give different codes"
    ta, tb = median_ms(lambda: pytorch_dynamic(x)), median_ms(lambda: quantize_input(x))
    print(f"   {shape[0]:5d} x {shape[1]:4d}: {ta:7.3f} | {tb:7.3f} | {ta / tb:4.1f}x")

print("\n2. attention scores with the key mask, BERT-base, batch 8, seq 128, 12 heads (one layer)")
L, B, heads = 128, 8, 12
proj = torch.randn(L, B, 3 * 768)
lengths = torch.tensor([23, 9, 31, 17, 44, 12, 25, 52])  # SST-2 dev-like


def before():
    s = interleaved_qk(proj, heads)
    keep = torch.arange(L)[None, None, :] < lengths.repeat_interleave(heads)[:, None, None]
    return s.masked_fill(~keep, float("-inf"))


def now():
    return interleaved_qk(proj, heads, lengths)


assert torch.equal(before(), now()), "the two give different scores"
ta, tb = median_ms(before), median_ms(now)
print(f"   GEMM + masked_fill {ta:.3f} | masked GEMM {tb:.3f} | {ta / tb:.1f}x  (x 12 layers per forward)")
