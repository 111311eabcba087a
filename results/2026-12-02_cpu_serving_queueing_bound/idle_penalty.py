"""One batch of the served model (embedded MiniLM, SST-2 probe head, seq 64, packed, two torch
threads: the record's replica) timed offline in one process, three ways taking turns:
back to back, after 40 ms asleep (time.sleep: the process idle, as a replica between requests
at low load), and after 40 ms spinning in Python (the process busy, no model work).

    python results/2026-12-02_cpu_serving_queueing_bound/idle_penalty.py > .../idle_penalty.txt
"""
import sys
import time

import numpy as np
import torch

import bertg4
from bertg4.data import load_sst2
from bertg4.serve.app import answer

torch.set_num_threads(2)
pred = bertg4.load("embedded", task="SST", seq_length=64)
texts = load_sst2("dev").first
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, padding {pred.default_padding}")


def idle(how: str) -> None:
    if how == "sleep":
        time.sleep(0.040)
    elif how == "spin":
        end = time.perf_counter() + 0.040
        while time.perf_counter() < end:
            pass


ways = ("back to back", "sleep", "spin")
for b in (1, 4):
    for k in range(10):  # warm-up
        answer(pred, texts[k * b:(k + 1) * b], None)
    took = {w: [] for w in ways}
    for k in range(60):
        rows = texts[(k * b) % 800:(k * b) % 800 + b]
        for w in ways:  # the same rows, the three ways in turn
            idle(w)
            t0 = time.perf_counter()
            answer(pred, rows, None)
            took[w].append(1e3 * (time.perf_counter() - t0))
    for w in ways:
        t = np.array(took[w])
        print(f"batch {b}, {w:>12}: median {np.median(t):6.2f} ms, p10 {np.percentile(t, 10):6.2f}, "
              f"p90 {np.percentile(t, 90):6.2f} (60 batches)")
sys.stdout.flush()
