"""Where the time of one forward goes: PyTorch's profiler over bertg4's ``int8`` and
``onednn-int8`` graphs, ONNX Runtime's profiler over its dynamic INT8 graph; BERT-base (random
weights), SST head, seq 128, batch 1 and 8, two threads; ms per forward by operator.

    python results/2026-11-29_cpu_onednn_int8_vs_ort/ops.py > results/2026-11-29_cpu_onednn_int8_vs_ort/ops.txt
"""
import collections
import json
import os
import tempfile
import warnings

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import bertg4

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
L, N = 128, 5


def inputs(b):
    rng = np.random.default_rng(0)
    return (rng.integers(1000, 2000, (b, L)), np.zeros((b, L), np.int64), np.full(b, L, np.int64))


def torch_ops(recipe, b):
    m = bertg4.load("random:bert_12_768_12", task="SST", recipe=recipe, seq_length=L).module
    args = tuple(torch.from_numpy(a) for a in inputs(b))
    with torch.no_grad():
        for _ in range(3):
            m(*args)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(N):
                m(*args)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return {e.key: e.self_cpu_time_total / 1e3 / N for e in rows}


def ort_ops(b):
    import onnxruntime as ort
    p = bertg4.load("random:bert_12_768_12", task="SST", engine="ort", recipe="int8", seq_length=L)
    o = ort.SessionOptions()
    o.enable_profiling, o.profile_file_prefix = True, os.path.join(tempfile.mkdtemp(), "ort")
    s = ort.InferenceSession(p.path, o, providers=["CPUExecutionProvider"])
    feed = dict(zip(("input_ids", "token_types", "valid_length"), inputs(b)))
    for _ in range(3 + N):
        s.run(None, feed)
    events = json.load(open(s.end_profiling()))
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    assert len(runs) == 3 + N, f"{len(runs)} runs profiled"
    total = collections.Counter()
    for e in events:  # the last N runs: the 3 warm-up runs left out, as for torch
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= runs[3]:
            total[e["args"]["op_name"]] += e["dur"] / 1e3 / N
    return dict(total.most_common())


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per forward (self time), "
      f"mean of {N} profiled forwards")
for b in (1, 8):
    for name, ops in (("pt int8", torch_ops("int8", b)), ("pt onednn-int8", torch_ops("onednn-int8", b)),
                      ("ort int8", ort_ops(b))):
        top = list(ops.items())[:10]
        print(f"\nbatch {b}, {name}: total {sum(ops.values()):.1f} ms")
        for k, v in top:
            print(f"  {k:45s} {v:8.2f}")
