"""The dynamic-batching simulator of :mod:`bertg4.cost`, fed with what a server measured.

Three refinements over the offline model (:func:`bertg4.cost.simulate` with a bench curve):

- **Service times measured inside the replica**, in the same run: every answer says how
  long its batch computed and how many requests it held (``x-bertg4-service-ms``,
  ``x-bertg4-batch-size``). :func:`curve_from_batches` turns those into a curve
  ``{k: seconds}`` for k = 1..max_batch: the mean per size where the size was seen, a
  least-squares line through all batches where it was not.
- **The batch timer of ``@serve.batch``.** The replica computes on its event loop, so the
  batcher can only start its timer once the previous batch has finished: a batch starts
  ``max_wait`` after the later of its first request's arrival and the end of the previous
  batch, or as soon as ``max_batch`` requests are there (``timer="idle"``). The cost model
  starts the timer at the first request's arrival (``timer="arrival"``, which is exactly
  :func:`bertg4.cost.simulate`; the tests pin the two together).
- **The serving path around the batcher**: the client's latency minus the time the request
  spent in the replica's batcher (``x-bertg4-replica-ms``) is the HTTP, proxy, routing and
  (de)serialisation time. Its measured samples are added, drawn at random, to simulated
  batcher latencies.
"""
from __future__ import annotations

import bisect
import math
from collections import defaultdict

import numpy as np

from .. import cost

TIMERS = ("idle", "arrival")


def curve_from_batches(batches, max_batch: int) -> dict[int, float]:
    """``{k: seconds}`` for k = 1..``max_batch`` from ``(requests in batch, service seconds)`` samples:
    the mean per size where seen, else a least-squares line (slope >= 0); made non-decreasing."""
    samples = [(int(k), float(s)) for k, s in batches if k >= 1 and s > 0 and math.isfinite(s)]
    if not samples:
        raise ValueError("no batch service times measured: did any request succeed?")
    by = defaultdict(list)
    for k, s in samples:
        by[k].append(s)
    ks = np.array([k for k, _ in samples], dtype=float)
    ss = np.array([s for _, s in samples])
    if len(by) >= 2:
        slope, intercept = np.polyfit(ks, ss, 1)
    else:
        (k0,) = by
        slope, intercept = 0.0, float(np.mean(by[k0]))
    slope = max(float(slope), 0.0)
    floor = min(ss)
    vals = [float(np.mean(by[k])) if k in by else max(floor, float(intercept + slope * k))
            for k in range(1, int(max_batch) + 1)]
    # a batch of k + 1 never takes less than one of k (noise in rarely seen sizes aside)
    return cost.check_curve(dict(zip(range(1, int(max_batch) + 1), np.maximum.accumulate(vals).tolist())))


def batch_latencies(curve, rate: float, max_batch: int, max_wait_s: float = 0.0, n_requests: int = 20_000,
                    seed: int = 0, timer: str = "idle") -> tuple[np.ndarray, np.ndarray]:
    """Per-request latency (arrival to end of its batch) and batch sizes under Poisson load.

    ``timer="arrival"`` is :func:`bertg4.cost.simulate`'s rule; ``"idle"`` is
    ``@serve.batch`` beside a model that holds the event loop (see the module docstring).
    """
    if timer not in TIMERS:
        raise ValueError(f"timer must be one of {TIMERS}, got {timer!r}")
    svc = cost.service_times(curve, max_batch)
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be positive requests per second, got {rate!r}")
    a = cost._arrivals(int(n_requests), float(rate), seed).tolist()
    s, n, B, w = svc.tolist(), len(a), int(max_batch), float(max_wait_s)
    ends, sizes = [], []
    i, free = 0, 0.0
    while i < n:
        j = i + B - 1
        if timer == "arrival":
            trigger = a[i] + w
            if j < n and a[j] < trigger:
                trigger = a[j]
            start = free if free > trigger else trigger
        else:
            t0 = max(a[i], free)
            start = t0 + w
            if j < n and max(a[j], t0) < start:
                start = max(a[j], t0)
        end = bisect.bisect_right(a, start, i, min(i + B, n))
        free = start + s[end - i]
        ends.append(free)
        sizes.append(end - i)
        i = end
    latency = np.repeat(np.asarray(ends), sizes) - np.asarray(a)
    return latency, np.asarray(sizes)


def simulate(curve, rate: float, max_batch: int, max_wait_s: float = 0.0, overhead_s=None,
             n_requests: int = 20_000, seed: int = 0, timer: str = "idle",
             warmup_fraction: float = 0.05) -> dict:
    """Latency percentiles a server would show at ``rate``: the batcher simulated, plus
    ``overhead_s`` (measured per-request samples of the path around it, or None)."""
    lat, sizes = batch_latencies(curve, rate, max_batch, max_wait_s, n_requests, seed, timer)
    kept = lat[int(warmup_fraction * len(lat)):]
    if overhead_s is not None and len(overhead_s):
        extra = np.asarray(overhead_s, dtype=float)
        kept = kept + np.random.default_rng(seed + 1).choice(extra, size=len(kept), replace=True)
    p50, p90, p99 = np.percentile(kept, [50, 90, 99])
    capacity = max_batch / float(cost.service_times(curve, max_batch)[max_batch])
    return {"rate_per_s": float(rate), "latency_s_p50": float(p50), "latency_s_p90": float(p90),
            "latency_s_p99": float(p99), "latency_s_mean": float(kept.mean()),
            "mean_batch_size": float(np.mean(sizes)), "capacity_per_s": capacity,
            "stable": rate < capacity, "timer": timer}


def capacity(curve, max_batch: int) -> float:
    """Requests/s when every batch is full: ``max_batch / service(max_batch)``."""
    return max_batch / float(cost.service_times(curve, max_batch)[max_batch])


def max_rate(curve, p99_target_s: float, max_batch: int, max_wait_s: float, overhead_s=None,
             n_requests: int = 20_000, seed: int = 0, timer: str = "idle", rtol: float = 0.01) -> float:
    """Highest simulated rate whose p99 (with overhead) meets the target; 0 when none does."""
    top = 0.98 * capacity(curve, max_batch)

    def ok(r):
        return simulate(curve, r, max_batch, max_wait_s, overhead_s, n_requests, seed, timer)["latency_s_p99"] \
            <= p99_target_s
    lo, hi = 0.0, top
    if ok(top):
        return top
    for _ in range(40):
        if hi - lo <= rtol * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
