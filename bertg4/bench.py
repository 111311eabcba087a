"""Timing that does not know which engine it times, and the records it writes.

Rules (see README, "How bertg4 measures"): inputs are staged on the device before
the clock starts; warm-up iterations are excluded; each timed iteration ends with
the predictor's own ``synchronize()`` (``torch.cuda.synchronize`` for PyTorch), so
a latency is the wall time of one whole batch; throughput is sequences over the
summed timed wall time.

:func:`measure_points` is the one timing path: ``sweep_batch_sizes``/``sweep_recipes``,
``sweep.run_sweep``, the ladder suite and ``bertg4 bench --traffic`` (whole passes over real
request lengths, :func:`bertg4.traffic.measure_traffic`) all time and record through it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time

import numpy as np

from .system import allocator, command_line, versions
from .recipe import NotApplicable
from .text import Batch, check_batch_size


def measure(predictor, batch: Batch, batch_size: int, warmup: int = 3, iters: int = 20,
            max_seconds: float | None = None, progress: bool = False) -> dict:
    """Time ``iters`` batches of ``batch_size`` rows drawn in turn from ``batch``.

    Returns per-batch latency statistics in milliseconds, per-sequence latency,
    sequences/s and achieved TFLOP/s (FLOPs from the model configuration).
    ``max_seconds`` stops the timed loop early (at least one iteration runs).
    """
    check_batch_size(batch_size)
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    rows = batch.repeat_to(max(batch_size, len(batch)))
    n_distinct = max(1, len(rows) // batch_size)
    staged = [predictor.prepare(rows[i * batch_size:(i + 1) * batch_size]) for i in range(n_distinct)]
    predictor.synchronize()
    getattr(predictor, "reset_peak_memory", lambda: None)()
    for i in range(warmup):
        predictor.run(staged[i % n_distinct])
    predictor.synchronize()
    times = []
    loop = range(iters)
    if progress:
        from tqdm.auto import tqdm
        loop = tqdm(loop, desc=f"timing batch {batch_size}", unit="batch", leave=False)
    start = time.perf_counter()
    for i in loop:
        t0 = time.perf_counter()
        predictor.run(staged[i % n_distinct])
        predictor.synchronize()
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    ms = np.asarray(times) * 1e3
    seq_per_s = batch_size * len(times) / float(np.sum(times))
    flops = predictor.config.flops_per_sequence(batch.seq_len)
    return {
        "batch_size": batch_size, "seq_length": batch.seq_len, "warmup": warmup,
        "iterations": len(times),
        "latency_ms_mean": float(ms.mean()), "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p90": float(np.percentile(ms, 90)), "latency_ms_p99": float(np.percentile(ms, 99)),
        "latency_ms_min": float(ms.min()), "latency_ms_std": float(ms.std()),
        "latency_ms_per_sequence": float(ms.mean() / batch_size),
        "sequences_per_s": seq_per_s, "tflops_achieved": flops * seq_per_s / 1e12,
        "gflop_per_sequence": flops / 1e9,
    }




def median_ms(fn, n: int = 30, warmup: int = 5) -> float:
    """Median wall time, in ms, of ``n`` calls of ``fn()`` after ``warmup`` untimed ones: for
    timing one kernel alone (the records' microbenchmark scripts); models go through
    :func:`measure`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def in_fresh_process(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a newly spawned Python process; its result comes back pickled.

    Engines are measured this way one after the other: MXNet's and PyTorch's OpenMP thread
    pools keep spinning after their own work and slow the other down in a shared process.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()




def record(predictor, timing: dict, **extra) -> dict:
    """One tidy result row: what ran, where, how fast; ``extra`` adds accuracy etc."""
    row = {"engine": predictor.engine, "recipe": predictor.recipe.name, "task": predictor.task.name,
           "model": predictor.config.name, "dtype": predictor.recipe.dtype,
           "device": predictor.device, "device_name": predictor.device_name()}
    from .pt.matmul import label
    library = label(predictor)  # which library ran a CPU predictor's float32 matmuls (bertg4.pt.matmul)
    if library:
        row["float32_matmul"] = library
    row.update(timing)
    peak = getattr(predictor, "peak_memory_bytes", lambda: None)()
    row["peak_memory_mb"] = None if peak is None else peak / 2**20
    row.update(extra)
    row.update(record_fields())
    return row


def record_fields(device_name: str | None = None) -> dict:
    """What every record ends with: versions, host, date (UTC), command; and ``device_name``
    when given (records of code that is not a predictor: the peers)."""
    out = {"device_name": device_name} if device_name is not None else {}
    out.update({"versions": versions(), "allocator": allocator(), "host": platform.node(),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "command": command_line()})
    return out




def write_json(obj, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)
    return path


def write_jsonl(records: list[dict], path: str) -> str:
    """One JSON object per line (the bench records)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, default=str) + "\n")
    os.replace(tmp, path)
    return path


def out_of_memory(error: Exception) -> bool:
    """A CUDA out-of-memory error of either engine (torch's own class, or MXNet's MXNetError
    whose message carries cudaMalloc's "out of memory")."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return type(error).__name__ == "MXNetError" and "out of memory" in str(error).lower()


def measure_points(predictor, batch: Batch, batch_sizes, *, warmup: int = 3, iters: int = 20,
                   max_seconds: float | None = None, progress: bool = False, traffic: str | None = None,
                   padding: str | None = None, repeats: int = 3, label: str | None = None,
                   first_call: bool = False, stop=None, log=None, **extra) -> list[dict]:
    """The one timing path: one record per batch size for ``predictor`` on ``batch``.

    Fixed shapes (``traffic`` None): :func:`measure` times ``iters`` batches (``warmup``
    batches excluded). Real traffic (``traffic`` names the source of ``batch``): every row in
    padding mode ``padding``, timed whole by :func:`bertg4.traffic.measure_traffic`
    (``warmup`` untimed passes, the median of ``repeats``). ``label`` replaces the record's
    recipe name; ``first_call`` times one call before warm-up and records it apart
    (``first_call_s``: torch.compile's compile time); ``stop()`` returning true records the
    remaining sizes as ``skipped: time budget``; a CUDA out-of-memory error is recorded as
    ``out of memory`` and the sizes go on; ``extra`` fields are added to every record.
    """
    sizes = [check_batch_size(b) for b in batch_sizes]
    loop = sizes
    if progress and len(sizes) > 1:
        from tqdm.auto import tqdm
        loop = tqdm(sizes, desc="batch sizes", unit="size")
    name = label or predictor.recipe.name
    base = {"engine": predictor.engine, "recipe": name, "task": predictor.task.name,
            "dtype": predictor.recipe.dtype, "device": predictor.device, "seq_length": batch.seq_len}
    if traffic is not None:
        base.update(traffic=traffic, padding=padding or predictor.default_padding)
    records = []
    for b in loop:
        if stop is not None and stop():
            records.append({**base, **extra, "batch_size": b, "status": "skipped: time budget"})
            continue
        first = {}
        try:
            if first_call:
                t0 = time.perf_counter()
                predictor(batch.repeat_to(b))
                predictor.synchronize()
                first["first_call_s"] = time.perf_counter() - t0
            if traffic is None:
                t = measure(predictor, batch, b, warmup=warmup, iters=iters, max_seconds=max_seconds)
            else:
                from .traffic import measure_traffic
                t = {"traffic": traffic, **measure_traffic(predictor, batch, b, padding=padding,
                                                           warmup=warmup, repeats=repeats,
                                                           max_seconds=max_seconds)}
        except NotApplicable as e:  # e.g. a padding mode this engine does not have
            records.append({**base, **extra, "batch_size": b, "status": "not applicable",
                            "reason": str(e)})
            continue
        except Exception as e:  # noqa: BLE001 -- out of memory is recorded, the rest raised
            if not out_of_memory(e):
                raise
            if "torch" in sys.modules:
                sys.modules["torch"].cuda.empty_cache()
            records.append({**base, **extra, "batch_size": b, "status": "out of memory",
                            "reason": str(e).strip().splitlines()[0]})
            continue
        rec = record(predictor, t, **{"status": "ok", **extra, **first})
        rec["recipe"] = name
        records.append(rec)
        if log is not None:
            if traffic is None:
                log(f"  {name:<22} batch {b:>4}: {t['latency_ms_p50']:8.3f} ms p50, "
                    f"{t['sequences_per_s']:10.1f} seq/s, {t['tflops_achieved']:7.2f} TFLOP/s")
            else:
                log(f"  {predictor.engine} {name:<20} {traffic} {t['padding']:<8} batch {b:>4}: "
                    f"{t['sentences_per_s']:9.1f} sentences/s, {t['tokens_per_s']:10.0f} tokens/s, "
                    f"waste {t['padding_waste']:.2f}")
    return records


def sweep_batch_sizes(predictor, batch: Batch, batch_sizes, warmup: int = 3, iters: int = 20,
                      max_seconds: float | None = None, progress: bool = True, **extra) -> list[dict]:
    """One record per batch size, same predictor and inputs (cycled to fill each batch):
    :func:`measure_points` at fixed shapes."""
    return measure_points(predictor, batch, batch_sizes, warmup=warmup, iters=iters,
                          max_seconds=max_seconds, progress=progress, **extra)


def sweep_recipes(recipes, texts, batch_sizes, model: str = "embedded", task="SST", engine: str = "pt",
                  device: str = "cpu", seq_length: int = 128, checkpoint=None, warmup: int = 3,
                  iters: int = 20, max_seconds: float | None = None, progress: bool = False,
                  vocab: str | None = None, **extra) -> list[dict]:
    """Every recipe over every batch size on the same sentences: one record per point
    (``extra`` fields are added to every record).

    A recipe the engine cannot honour on ``device`` gives one ``status: "not applicable"``
    record with the reason, and the sweep goes on.
    """
    from .api import load
    from .recipe import NotApplicable, get_recipe
    from .checkpoint import load_checkpoint
    ckpt = checkpoint or load_checkpoint(model, vocab=vocab)
    records = []
    for recipe in recipes:
        recipe = get_recipe(recipe)
        try:
            p = load(task=task, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                     checkpoint=ckpt)
        except NotApplicable as e:
            records.append({"engine": engine, "recipe": recipe.name, "dtype": recipe.dtype,
                            "device": device, "status": "not applicable", "reason": str(e), **extra})
            continue
        batch = p.featurize(texts)
        records += sweep_batch_sizes(p, batch, batch_sizes, warmup=warmup, iters=iters,
                                     max_seconds=max_seconds, progress=progress, status="ok",
                                     examples=len(batch), of=len(batch), **extra)
        del p
    return records


def read_records(path: str) -> list[dict]:
    """Records from a JSONL file (``bertg4 bench``) or a JSON file holding one record or a
    list (``bertg4 deploy --json``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read records ({e.strerror})") from None
    try:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON{'L' if path.endswith('.jsonl') else ''} "
                         f"(line {e.lineno}: {e.msg})") from None
    records = data if isinstance(data, list) else [data]
    if not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected JSON objects (records)")
    return records
