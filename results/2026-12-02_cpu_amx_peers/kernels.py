"""Which oneDNN implementations run in one forward of each oneDNN rung on this CPU: the embedded
MiniLM, SST, a batch of eight SST-2 dev sentences, `packed`, after one untimed forward. oneDNN's
log (ONEDNN_VERBOSE=1) names each executed primitive's implementation; this counts them.

    python results/2026-12-02_cpu_amx_peers/kernels.py > results/2026-12-02_cpu_amx_peers/kernels.txt
"""
import collections
import os
import subprocess
import sys

CHILD = """
import sys, torch, bertg4
from bertg4 import data
torch.set_num_threads(2)
texts = list(data.load_sst2("dev").first[:8])
p = bertg4.load("embedded", task="SST", recipe=sys.argv[1])
p.predict(texts)
print("== forward", flush=True)
p.predict(texts)
"""

for recipe in ("onednn-fp32", "bf16", "onednn-int8"):
    out = subprocess.run([sys.executable, "-c", CHILD, recipe], capture_output=True, text=True,
                         env={**os.environ, "ONEDNN_VERBOSE": "1"}, check=True).stdout
    lines = out.split("== forward", 1)[1].splitlines()
    impls = collections.Counter()
    for line in lines:
        f = line.split(",")
        if len(f) > 5 and f[0] == "onednn_verbose" and "exec" in f:
            i = f.index("exec")
            impls[(f[i + 2], f[i + 3])] += 1  # primitive kind, implementation
    print(f"== {recipe}: oneDNN primitives executed in one forward (kind, implementation: count)")
    for (kind, impl), n in sorted(impls.items()):
        print(f"  {kind:12s} {impl:40s} {n}")
    if not impls:
        print("  none")
