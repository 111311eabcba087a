"""The float32 GEMMs of BERT-base on this CPU, PyTorch's default library (MKL) against oneDNN
(bertg4.pt.matmul.onednn_float32), each timed alone (2 threads, median us of 200 calls, twice),
with each result's largest error relative to a float64 reference; then attention's two calls
as a forward makes them (bertg4.pt.attention.interleaved_qk with the key mask, and
interleaved_valatt: with the setting, Q and K copied dense first) and the two copies alone;
and the libraries, the CPU's flags and what the probe says.

    python results/2026-12-02_cpu_onednn_matmul/kernels.py > results/2026-12-02_cpu_onednn_matmul/kernels.txt
"""
import torch

from bertg4.bench import median_ms
from bertg4.pt.attention import _head_view, interleaved_qk, interleaved_valatt
from bertg4.pt.matmul import onednn_float32, probe
from bertg4.system import cpu_name

torch.set_num_threads(2)
torch.manual_seed(0)
L, H, heads, d = 128, 768, 12, 64
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
config = torch.__config__.show()
print("libraries:", "; ".join(ln.strip(" -") for ln in config.splitlines() if "Math Kernel" in ln or "MKL-DNN" in ln))
with open("/proc/cpuinfo", encoding="utf-8") as f:
    flags = set(next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split())
print("CPU flags:", " ".join(f"{x}={'yes' if x in flags else 'no'}" for x in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")))
print(f"probe: {probe(768, 12) or 'float32 arithmetic on oneDNN'}")


def rel_err(got, a, b, fn):
    exact = fn(a.double(), b.double())
    return float((got.double() - exact).abs().max() / exact.abs().max())


cases = {}
x, w = torch.randn(L, H), torch.randn(H, H)
cases["Linear 128x768 by 768x768 (mm)"] = (lambda a, b: torch.mm(a, b.t()), x, w)
for B in (1, 8):
    proj = torch.randn(L, B, 3 * H)
    q, k, v = (_head_view(proj, heads, i) for i in range(3))
    p = torch.softmax(torch.randn(B * heads, L, L), -1)
    cases[f"batch {B}: scores, {B * heads}x128x64 by 64x128, Q and K dense (bmm)"] = \
        (lambda a, b: torch.bmm(a, b.transpose(1, 2)), q.contiguous(), k.contiguous())
    cases[f"batch {B}: scores, Q and K strided views of the interleaved projection (bmm)"] = \
        (lambda a, b: torch.bmm(a, b.transpose(1, 2)), q, k)
    cases[f"batch {B}: context, {B * heads}x128x128 by 128x64, V a strided view (bmm)"] = (torch.bmm, p, v)

for what, (fn, a, b) in cases.items():
    row = []
    for name, ctx in (("default", None), ("oneDNN", onednn_float32)):
        def call():
            if ctx is None:
                return fn(a, b)
            with ctx():
                return fn(a, b)
        us = [1e3 * median_ms(call, 200, 20) for _ in range(2)]
        row.append(f"{name} {us[0]:7.1f} {us[1]:7.1f} us (error {rel_err(call(), a, b, fn):.1e})")
    print(f"{what}\n    " + "    ".join(row))

print("as a forward makes them (median us of 200 calls, twice):")
for B in (1, 8):
    proj = torch.randn(L, B, 3 * H)
    vl = torch.full((B,), L)
    p = torch.softmax(torch.randn(B * heads, L, L), -1)
    calls = {"scores, interleaved_qk with the key mask": lambda: interleaved_qk(proj, heads, vl),
             "context, interleaved_valatt": lambda: interleaved_valatt(proj, p, heads),
             "the two copies (Q and K dense)": lambda: (_head_view(proj, heads, 0).contiguous(),
                                                        _head_view(proj, heads, 1).contiguous())}
    for what, fn in calls.items():
        row = []
        for name, ctx in (("default", None), ("oneDNN", onednn_float32)):
            if ctx is None and what.startswith("the two copies"):
                continue

            def call(fn=fn, ctx=ctx):
                if ctx is None:
                    return fn()
                with ctx():
                    return fn()
            us = [1e3 * median_ms(call, 200, 20) for _ in range(2)]
            row.append(f"{'' if what.startswith('the two copies') else name + ' '}{us[0]:7.1f} {us[1]:7.1f} us")
        print(f"batch {B}: {what}\n    " + "    ".join(row))
