"""oneDNN's own log of the calls that run under the setting: attention's context GEMM and a
prepacked Linear, each once with the setting (bertg4.pt.matmul.onednn_float32) and once
without. Only the primitives that run are kept.

    ONEDNN_VERBOSE=1 python results/2026-12-02_cpu_onednn_matmul/verbose.py | grep ',exec,' \
        > results/2026-12-02_cpu_onednn_matmul/verbose.txt
"""
import sys

import torch

from bertg4.pt.matmul import onednn_float32
from bertg4.pt.onednn import linear

torch.set_num_threads(2)
p, v = torch.softmax(torch.randn(12, 128, 128), -1), torch.randn(12, 128, 64)
x, w, b = torch.randn(128, 768), torch.randn(768, 768), torch.randn(768)
packed = torch.ops.mkldnn._reorder_linear_weight(w)
for setting in (True, False):
    print(f"== {'with' if setting else 'without'} the setting: bmm 12x128x128 by 12x128x64, then a prepacked Linear",
          flush=True)
    sys.stdout.flush()
    if setting:
        with onednn_float32():
            torch.bmm(p, v)
            linear(x, packed, b)
    else:
        torch.bmm(p, v)
        linear(x, packed, b)
