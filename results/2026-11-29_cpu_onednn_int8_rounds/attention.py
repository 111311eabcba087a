"""Two ways to make the interleaved attention of one BERT-base layer cheaper, timed alone
beside it (seq 128, 12 heads, 2 threads, random projection; median ms of 30 calls, twice):

* bfloat16: Q, K and V copied apart into bfloat16 in one cast-and-copy, scores and context by
  bfloat16 batched GEMMs (oneDNN uses the CPU's AVX-512 BF16 instructions), the softmax
  in bfloat16 or in float32, the context cast back to float32 in its layout copy;
* SDPA: PyTorch's fused CPU attention (``scaled_dot_product_attention``) on strided views of
  the same interleaved projection.

    python results/2026-11-29_cpu_onednn_int8_rounds/attention.py > results/2026-11-29_cpu_onednn_int8_rounds/attention.txt
"""
import torch
import torch.nn.functional as F

from bertg4.bench import median_ms
from bertg4.pt.attention import interleaved_qk, interleaved_valatt, key_mask_bias

torch.set_num_threads(2)
torch.manual_seed(0)
L, H, heads, d = 128, 768, 12, 64


def interleaved(proj, vl):  # what the interleaved rungs run
    return interleaved_valatt(proj, torch.softmax(interleaved_qk(proj, heads, vl), -1), heads)


def bf16(proj, vl, softmax_fp32):
    _, B, H3 = proj.shape
    qkv = torch.empty((3, B, heads, L, d), dtype=torch.bfloat16)
    qkv.copy_(proj.view(L, B, heads, 3, d).permute(3, 1, 2, 0, 4))
    qkv = qkv.view(3, B * heads, L, d)
    s = torch.baddbmm(key_mask_bias(vl, heads, L, torch.bfloat16), qkv[0], qkv[1].transpose(1, 2), alpha=d ** -0.5)
    p = torch.softmax(s, -1, dtype=torch.float32).to(torch.bfloat16) if softmax_fp32 else torch.softmax(s, -1)
    ctx = torch.bmm(p, qkv[2])
    out = torch.empty((L, B, heads, d))
    out.copy_(ctx.view(B, heads, L, d).permute(2, 0, 1, 3))
    return out.view(L, B, H3 // 3)


def sdpa(proj, vl):
    _, B, H3 = proj.shape
    q, k, v = proj.view(L, B, heads, 3, d).permute(3, 1, 2, 0, 4)  # (B, heads, L, d) strided views
    mask = (torch.arange(L)[None, :] < vl[:, None])[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).permute(2, 0, 1, 3).reshape(L, B, H3 // 3)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one layer's attention, ms (median of 30)")
for B in (1, 8):
    proj = torch.randn(L, B, 3 * H) * 2
    vl = torch.full((B,), L)
    vl[0] = 50  # one short row, so the mask matters
    ref = interleaved(proj, vl)
    ways = {"interleaved fp32": lambda: interleaved(proj, vl),
            "bf16, softmax fp32": lambda: bf16(proj, vl, True),
            "bf16, softmax bf16": lambda: bf16(proj, vl, False),
            "sdpa fp32": lambda: sdpa(proj, vl)}
    for name, fn in ways.items():
        err = (fn() - ref).abs().max().item()
        ms = [median_ms(fn) for _ in range(2)]
        print(f"batch {B}  {name:<20} {ms[0]:7.3f} {ms[1]:7.3f} ms   max |diff| from interleaved fp32 {err:.1e}")
