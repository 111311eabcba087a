"""Which Linear layers cost INT8 its agreement with float32: SST-2 dev labels of a fine-tuned
model with only some Linears quantized (PyTorch dynamic quantization, per-channel weights).

    python results/2026-11-29_cpu_int8/sensitivity.py MODEL_DIR > results/2026-11-29_cpu_int8/sensitivity.txt
"""
import copy
import sys
import warnings

import numpy as np

import bertg4
from bertg4 import data as D
from bertg4.pt import quantize as Q

warnings.simplefilter("ignore")
model = sys.argv[1]
texts = list(D.load_sst2("dev").first)
p = bertg4.load(model, task="SST", engine="pt", recipe="baseline")
feats = p.featurize(texts)
base = p.module
ref = p.infer(feats, 32, padding="longest")
names = Q.linears(base)


def agreement(selected, reduce_range):
    """Quantize only ``selected`` Linears; agreement of the labels with float32's, max |logit diff|."""
    p.module = Q.quantize_linears(copy.deepcopy(base), selected, reduce_range)
    out = p.infer(feats, 32, padding="longest")
    p.module = base
    return float((out.argmax(1) == ref.argmax(1)).mean()), float(np.abs(out - ref).max())


def show(label, selected, reduce_range=False):
    a, d = agreement(selected, reduce_range)
    print(f"| {label} | {'7' if reduce_range else '8'} | {100 * a:.2f} % | {round((1 - a) * len(texts))} | {d:.3f} |",
          flush=True)


print(f"model {model}; {len(texts)} SST-2 dev sentences; {len(names)} Linear layers\n")
print("| quantized | activation bits | agreement with fp32 | labels changed | max abs logit diff |")
print("|---|---:|---:|---:|---:|")
show("every Linear (PyTorch's default)", names, reduce_range=True)
show("every Linear", names)
ratios = Q.outliers(base, Q.calibration_inputs(p.tokenizer, 128, p.config.vocab_size))  # as the engine does
kept = Q.keep_float(ratios)
show(f"every Linear but {', '.join(kept)} (bertg4's int8)", [n for n in names if n not in kept])
show("every Linear but the FFN output projections (ffn2)", [n for n in names if not n.endswith("ffn2")])
for i in range(p.config.num_layers):
    show(f"layer {i} only", [n for n in names if n.startswith(f"bert.layers.{i}.")])
for kind in ("query", "key", "value", "out", "ffn1", "ffn2"):
    show(f"every layer's {kind} only", [n for n in names if n.endswith("." + kind)])
for n in [n for n in names if n.startswith("bert.layers.0.")]:
    show(f"{n} only", [n])
print("\nInput outlier ratio (largest channel max |x| / median channel's, 32 sample sentences), top 8:\n")
for n, r in sorted(ratios.items(), key=lambda kv: -kv[1])[:8]:
    print(f"- {n}: {r:.1f}")

print("\nbertg4's int8 recipe (bertg4.load(..., recipe='int8')) against float32, per padding mode:\n")
print("| padding | agreement with fp32 | labels changed |")
print("|---|---:|---:|")
q = bertg4.load(model, task="SST", engine="pt", recipe="int8")
for mode in ("fixed", "longest", "packed"):
    a = (q.predict(texts, padding=mode) == p.predict(texts, padding=mode)).mean()
    print(f"| {mode} | {100 * a:.2f} % | {round((1 - a) * len(texts))} |", flush=True)
