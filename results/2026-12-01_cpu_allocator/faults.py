"""Page faults per forward with glibc's defaults and with freed memory kept: BERT-base (random
weights) ``onednn-int8``, SST head, seq 128, every row 128 tokens, two threads; each line one
fresh process (3 warm-up forwards, then 15 timed). Minor faults from ``getrusage`` over the
timed forwards, the process's peak resident set (``ru_maxrss``), median and fastest ms.

    python results/2026-12-01_cpu_allocator/faults.py > results/2026-12-01_cpu_allocator/faults.txt
"""
import os
import subprocess
import sys

CHILD = r"""
import resource, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
import bertg4
from bertg4 import system
from bertg4.text import Batch
b, L = int(sys.argv[1]), 128
p = bertg4.load("random:bert_12_768_12", task="SST", recipe="onednn-int8", seq_length=L)
staged = p.prepare(Batch(np.random.default_rng(0).integers(1000, 2000, (b, L)), np.zeros((b, L), np.int64),
                         np.full(b, L, np.int64)))
for _ in range(3):
    p.run(staged)
ts, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(15):
    t = time.perf_counter(); p.run(staged); ts.append(time.perf_counter() - t)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 15
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{faults:9.0f} {statistics.median(ts) * 1e3:9.1f} {min(ts) * 1e3:9.1f} {rss:9.0f}   {system.allocator()}")
"""


def main(processes: int = 3):
    print("setting                     batch  faults/forward  median ms  fastest ms  peak RSS MB   allocator")
    for batch in (8, 32):
        for i in range(processes):
            for setting in ("1", "0"):  # the two settings' processes take turns
                env = {**os.environ, "BERTG4_KEEP_FREED_MEMORY": setting, "GLIBC_TUNABLES": ""}
                out = subprocess.run([sys.executable, "-c", CHILD, str(batch)], capture_output=True, text=True,
                                     env=env, check=True).stdout.strip()
                name = "kept (default)" if setting == "1" else "BERTG4_KEEP_FREED_MEMORY=0"
                print(f"{name:<27} {batch:>5}  {out}", flush=True)


if __name__ == "__main__":
    main()
