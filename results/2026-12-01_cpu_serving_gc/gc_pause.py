"""How long one full collection of Python's garbage collector takes in a process holding what a
replica holds (the served model warmed up, Ray Serve, FastAPI imported), before and after
``bertg4.system.freeze_heap``. Run from the repository root:
    python results/2026-12-01_cpu_serving_gc/gc_pause.py > results/2026-12-01_cpu_serving_gc/gc_pause.txt
"""
import gc
import time

import numpy as np


def full_collections(n=5):
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        gc.collect()
        ms.append(1e3 * (time.perf_counter() - t0))
    return ms


if __name__ == "__main__":
    import fastapi  # noqa: F401  (what a replica imports)
    import ray  # noqa: F401
    from ray import serve  # noqa: F401
    from bertg4.serve.app import DEFAULTS, answer, load_predictor
    from bertg4.system import freeze_heap
    spec = {**DEFAULTS, "seq_length": 64}
    pred = load_predictor(spec)
    answer(pred, ["a warm-up sentence"] * 2)
    print(f"objects tracked by the collector: {len(gc.get_objects())}")
    before = full_collections()
    frozen = freeze_heap()
    after = full_collections()
    print(f"full collection, whole heap: median {np.median(before):.1f} ms (each: "
          + ", ".join(f"{x:.1f}" for x in before) + ")")
    print(f"frozen {frozen} objects; full collection after: median {np.median(after):.2f} ms (each: "
          + ", ".join(f"{x:.2f}" for x in after) + ")")
