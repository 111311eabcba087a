"""The residual add inside oneDNN's INT8 Linear (``qlinear_pointwise.binary``, post-op "add")
against the INT8 Linear followed by a separate add, for BERT-base's two Linears whose output
a residual add follows (the attention output, 768 -> 768, and the FFN's second, 3072 -> 768),
1024 tokens (batch 8, seq 128), 2 threads; median ms of 30 calls, twice.

    python results/2026-11-29_cpu_onednn_int8_rounds/residual_add.py > results/2026-11-29_cpu_onednn_int8_rounds/residual_add.txt
"""
import warnings

import torch

from bertg4.bench import median_ms
from bertg4.pt import onednn

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
torch.manual_seed(0)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for K in (768, 3072):
    x, res = torch.randn(1024, K), torch.randn(1024, 768)
    codes, s, z = onednn.quantize_weight(torch.randn(768, K) * 0.03)
    packed, b = torch.ops.onednn.qlinear_prepack(codes, None), torch.randn(768) * 0.1
    q, xs, xz = onednn.quantize_input(x)

    def separate():
        return torch.ops.onednn.qlinear_pointwise(q, xs, xz, packed, s, z, b, 1.0, 0, torch.float32, "none", [],
                                                  "") + res

    def fused():
        return torch.ops.onednn.qlinear_pointwise.binary(q, xs, xz, packed, s, z, res, b, 1.0, 0, torch.float32,
                                                         1.0, 0, "add", 1.0, "none", [], "")
    diff = (separate() - fused()).abs().max().item()
    ms = [(median_ms(separate), median_ms(fused)) for _ in range(2)]
    print(f"{K:>4} -> 768: separate add {ms[0][0]:.3f} {ms[1][0]:.3f} ms, add in the kernel "
          f"{ms[0][1]:.3f} {ms[1][1]:.3f} ms, max |diff| {diff:.1e}")
