"""The six Linears of one BERT-base layer (Q, K, V, attention output, FFN in, FFN out) at a
given number of rows, two threads: ms per call summed over the six, median of 30 calls.

float32 through ``F.linear`` and through oneDNN with the weight prepacked (what
``onednn-fp32`` runs), and PyTorch's dynamic INT8 Linear on each quantized engine.

    python results/2026-11-29_cpu_onednn_fixed_vs_ort/linears.py > results/2026-11-29_cpu_onednn_fixed_vs_ort/linears.txt
"""
import warnings

import torch

from bertg4 import bench

warnings.filterwarnings("ignore")
torch.manual_seed(0)
torch.set_num_threads(2)
SHAPES = [(768, 768)] * 4 + [(768, 3072), (3072, 768)]


def median_ms(f, n=30):
    return bench.median_ms(f, n)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for rows in (128, 1024):
    total = {}
    for k, n in SHAPES:
        x, lin = torch.randn(rows, k), torch.nn.Linear(k, n)
        with torch.no_grad():
            total["fp32 F.linear"] = total.get("fp32 F.linear", 0) + median_ms(lambda: lin(x))
            wp = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach())
            total["fp32 oneDNN prepacked"] = total.get("fp32 oneDNN prepacked", 0) + median_ms(
                lambda: torch.ops.mkldnn._linear_pointwise(x, wp, lin.bias, "none", [], ""))
            for engine in torch.backends.quantized.supported_engines:
                if engine in ("none", "qnnpack"):
                    continue
                torch.backends.quantized.engine = engine
                q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                           dtype=torch.qint8)[0]
                packed = q._packed_params._packed_params
                key = f"int8 dynamic, {engine}"
                total[key] = total.get(key, 0) + median_ms(
                    lambda: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False))
    print(f"{rows} rows: " + ", ".join(f"{k} {v:.2f} ms" for k, v in total.items()))
