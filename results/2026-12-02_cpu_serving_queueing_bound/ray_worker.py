"""The replica's call for one batch (bertg4.serve.app.answer; embedded MiniLM, SST-2 probe head,
seq 64, packed, two torch threads) timed back to back in a plain process and in a Ray task of
2 CPUs on a local Ray instance (a worker process as Ray starts it, as a replica's), no HTTP and
no load: twice each, in turn.

    python results/2026-12-02_cpu_serving_queueing_bound/ray_worker.py > .../ray_worker.txt
"""
import json
import os
import subprocess
import sys
import time

import numpy as np


def timings(where: str) -> dict:
    import torch

    import bertg4
    from bertg4.data import load_sst2
    from bertg4.serve.app import answer
    torch.set_num_threads(2)
    pred = bertg4.load("embedded", task="SST", seq_length=64)
    texts = load_sst2("dev").first
    out = {"where": where, "niceness": os.nice(0), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
           "torch_threads": torch.get_num_threads()}
    for b in (1, 4):
        for k in range(10):  # warm-up
            answer(pred, texts[k * b:(k + 1) * b], None)
        t = []
        for k in range(80):
            rows = texts[(k * b) % 800:(k * b) % 800 + b]
            t0 = time.perf_counter()
            answer(pred, rows, None)
            t.append(1e3 * (time.perf_counter() - t0))
        out[f"batch {b} ms: median, p10, p90"] = [round(float(np.percentile(t, q)), 2) for q in (50, 10, 90)]
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "plain":
        print(json.dumps(timings("plain process")))
    elif len(sys.argv) > 1 and sys.argv[1] == "ray":
        import ray
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        try:
            print(json.dumps(ray.get(ray.remote(num_cpus=2)(timings).remote("Ray task"))))
        finally:
            ray.shutdown()
    else:  # each in a fresh process, in turn
        for _ in range(2):
            for how in ("plain", "ray"):
                r = subprocess.run([sys.executable, __file__, how], capture_output=True, text=True, check=True)
                print(r.stdout.strip().splitlines()[-1], flush=True)
