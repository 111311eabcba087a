"""The dynamic-batching simulator of :mod:`bertg4.cost`, fed with what a server measured.

Refinements over the offline model (:func:`bertg4.cost.simulate` with a bench curve):

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
- **A token budget** (``bertg4 serve --max-batch-tokens``): a batch holds requests while
  their tokens fit, and its service time is a line in its token count, fitted to the
  measured batches (:func:`token_service`).
- **The serving path around the batcher**: the client's latency minus the time the request
  spent in the replica's batcher (``x-bertg4-replica-ms``) is the HTTP, proxy, routing and
  (de)serialisation time. Its measured samples are added, drawn at random, to simulated
  batcher latencies. A request that reaches the replica while it computes a batch is read only
  once that batch ends, so at load these samples also hold waits for the batch in progress,
  which the simulated queue makes the request wait for as well. Where the server's clock is
  the load generator's (``x-bertg4-clock``, one machine), the load records take those waits
  out of each sample first (:func:`bertg4.serve.loadtest.blocked_on_the_way_in`) and keep
  the simulation with every sample beside it (``*_raw_overhead``).
- **How much a batch's service time varies** (``spread``): the measured batches' service
  times over what the curve (or the token line) gives for their size, one factor per batch.
  One pool of factors serves every batch size (the load records scale it to average 1, so that
  the curve's capacity still holds). Each simulated batch takes its size's time times a factor
  drawn from these, so the simulated queue sees the measured variability as well as the mean
  (a queue's tail grows with the spread of its service times, not only with their mean).
  Without ``spread`` every batch of a size takes the same time. Where the server shares the
  load generator's clock, the load records' headline percentiles are those with the spread and
  with the overhead less the batches waited for on the way in. Beside them: the mean curve with
  the same overhead (``*_mean_curve``), and the mean curve with all of it (``*_raw_overhead``).
  The latter was the headline of the records before ``results/2026-12-02_cpu_serving_blocked_wait``,
  and remains the headline for a server elsewhere. In it the overhead's blocked waits stand in for the
  spread's tail; in ``results/2026-12-02_cpu_serving_closed_loop_capacity`` they made the p50
  11-25 % too high from half load on.
- **The replica's work between batches** (``gap_s``): with requests waiting, the next batch
  does not start the moment the last one ends; the replica first answers the finished
  requests, reads new ones and forms the batch (``x-bertg4-batch-gap-ms``, measured for full
  batches whose requests were waiting, so that no wait of the batcher's timer is in it; not
  with a token budget). The simulated server stays busy for the median gap after each batch,
  without delaying that batch's own answers.
- **The server's bounded queues** (``limit``): a replica holds at most ``max_ongoing_requests``
  requests in its handler (the batcher's queue and the running batch) and
  ``max_queued_requests`` more waiting for a place; past both, Serve answers 503. The simulated
  server turns a request away when it holds ``limit`` requests, so that near capacity the
  simulated latencies are those of the requests let in, as the measured ones are, and the share
  turned away can be set beside the measured one.
- **Several replicas** (``replicas``): each with its own batcher, bounds and gap, behind a
  dispatcher that sends each arrival to the replica holding the fewest requests (HAProxy's
  ``balance leastconn``, the config Ray Serve writes for its HAProxy ingress). The load records
  simulate as many as the deployment runs (``num_replicas`` in the replicas' metadata), and say
  where the server's ingress is not HAProxy's (``simulated_note``); with one replica, the
  simulation is the one-replica simulation exactly.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict, deque

import numpy as np

from .. import cost

TIMERS = ("idle", "arrival")


def curve_from_ms(curve_ms) -> dict[int, float]:
    """A record's ``service_ms_curve`` (batch size, as text or int -> mean ms) as the curve the
    simulator takes (batch size -> seconds)."""
    return {int(b): float(ms) / 1e3 for b, ms in curve_ms.items()}


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


def service_spread(batches, predicted) -> np.ndarray:
    """Each measured batch's service time over the time ``predicted(batch)`` gives for it:
    ``batches`` are distinct batches (one sample each, whatever their requests), as
    ``(batch, seconds)``. The factors :func:`batch_latencies` draws from (``spread``)."""
    out = [float(t) / float(predicted(b)) for b, t in batches
           if t > 0 and math.isfinite(t) and 0 < predicted(b) < math.inf]
    if not out:
        raise ValueError("no batch service times to measure their spread with")
    return np.asarray(out)


def _check_spread(spread) -> np.ndarray | None:
    if spread is None:
        return None
    f = np.asarray(spread, dtype=float)
    if f.ndim != 1 or not len(f) or not np.all(np.isfinite(f)) or f.min() <= 0:
        raise ValueError("spread must be positive finite factors (measured service time over the curve's)")
    return f


def _draw_tokens(tokens, n: int, seed: int) -> np.ndarray:
    """``n`` requests' token counts drawn from the measured ``tokens`` (its own stream of ``seed``)."""
    return np.random.default_rng(seed + 2).choice(np.asarray(tokens, dtype=np.int64), size=int(n), replace=True)


def batch_latencies(curve, rate: float, max_batch: int, max_wait_s: float = 0.0, n_requests: int = 20_000,
                    seed: int = 0, timer: str = "idle", tokens=None, service=None,
                    gap_s: float = 0.0, spread=None, limit: int | None = None,
                    replicas: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-request latency (arrival to end of its batch) and batch sizes under Poisson load;
    after each batch a replica stays busy ``gap_s`` more (its work between batches).
    ``spread``: factors (:func:`service_spread`) each batch's service time is multiplied by,
    one drawn per batch (its own random stream); None: every batch of a size takes the same.

    ``timer="arrival"`` is :func:`bertg4.cost.simulate`'s rule; ``"idle"`` is
    ``@serve.batch`` beside a model that holds the event loop (see the module docstring).

    ``limit``: the most requests a replica holds at once, waiting or in a batch (Serve's
    ``max_ongoing_requests`` plus ``max_queued_requests``); a request arriving when it holds
    that many is turned away (a 503), and its latency is NaN. None: no bound, every request
    waits its turn however long the queue.

    ``replicas``: that many replicas, each with its own batcher and its own ``limit``, behind
    one dispatcher that sends each arrival to the replica holding the fewest requests (waiting
    or in a batch not yet ended), among equals the one after the last chosen: HAProxy's
    ``balance leastconn`` (which rotates among equals in its own order), the ingress Ray Serve
    writes with ``RAY_SERVE_ENABLE_HA_PROXY=1``. With a ``limit``, a request is turned away
    when the chosen replica is full, which under this dispatch means every replica is. Serve's
    own proxy routes otherwise: it compares the queues of two replicas drawn at random, and
    past ``max_ongoing_requests`` holds one queue of ``max_queued_requests`` for them all.

    With ``tokens`` (token counts to draw each request's from) a batch holds requests while
    their tokens fit in ``max_batch`` (a token budget, as ``batch_size_fn`` counts them), and
    goes as soon as the budget is reached or a request arrives that does not fit;
    ``service(batch_tokens)`` gives its seconds (``curve`` is then unused). One difference
    from Serve's batcher is kept on purpose: Serve puts the request that did not fit at the
    back of its queue, behind requests that arrived after it; here it opens the next batch.
    With a backlog of long requests, Serve's order can delay them more than simulated.
    """
    if timer not in TIMERS:
        raise ValueError(f"timer must be one of {TIMERS}, got {timer!r}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be positive requests per second, got {rate!r}")
    if limit is not None and not (isinstance(limit, (int, np.integer)) and not isinstance(limit, bool)
                                  and limit >= 1):
        raise ValueError(f"limit (requests a replica holds at most) must be an integer >= 1 or None, got {limit!r}")
    R = _check_replicas(replicas)
    g = _check_gap(gap_s)
    f = _check_spread(spread)
    a = cost._arrivals(int(n_requests), float(rate), seed).tolist()
    # one factor per batch (at most one batch per request), drawn up front from its own stream
    factor = np.random.default_rng(seed + 3).choice(f, size=int(n_requests)).tolist() if f is not None else None
    n, B, w = len(a), int(max_batch), float(max_wait_s)
    if tokens is None:
        s = cost.service_times(curve, max_batch).tolist()
        c = None
    else:
        pool = np.asarray(tokens, dtype=np.int64)
        if not len(pool) or pool.min() < 1 or pool.max() > B or service is None:
            raise ValueError(f"token counts must lie in 1..{B} (the budget), with a service(tokens) function")
        c = _draw_tokens(pool, n, seed).tolist()
    lat = [math.nan] * n
    sizes = []
    bound = math.inf if limit is None else int(limit)
    # per replica: the requests it let in that are not yet in a batch (indices, in arrival
    # order), the end times of those in its batches not yet ended (a heap), when it is free
    queues = [deque() for _ in range(R)]
    helds = [[] for _ in range(R)]
    free = [0.0] * R
    track = limit is not None or R > 1  # what is held matters to the bound or to the dispatch

    def fit(queue):
        """How many of ``queue``'s requests, from the first, one batch takes, and when it became
        full (the B-th request's arrival, the arrival that filled the token budget or the first
        that did not fit it; inf while neither has arrived)."""
        if c is None:
            return (B, a[queue[B - 1]]) if len(queue) >= B else (len(queue), math.inf)
        total = k = 0
        for idx in itertools.islice(queue, B + 1):  # every request holds at least one token
            if total + c[idx] > B:
                return k, a[idx]
            total += c[idx]
            k += 1
            if total == B:
                return k, a[idx]
        return k, math.inf

    def run_batches(r, horizon):
        """Replica ``r`` computes every batch that starts before ``horizon``: all requests it
        gets later arrive at or after ``horizon``, so those batches are settled."""
        queue = queues[r]
        while queue:
            first = a[queue[0]]
            k, full_at = fit(queue)
            if timer == "arrival":
                start = max(free[r], min(first + w, full_at))
            else:  # the timer starts once the replica is free
                t0 = max(first, free[r])
                start = min(t0 + w, max(full_at, t0))
            if start >= horizon:
                return
            members = [idx for idx in itertools.islice(queue, k) if a[idx] <= start]
            took = s[len(members)] if c is None else float(service(sum(c[idx] for idx in members)))
            if factor is not None:
                took *= factor[len(sizes)]
            done = start + took
            for idx in members:
                queue.popleft()
                lat[idx] = done - a[idx]
                if track:
                    heapq.heappush(helds[r], done)
            sizes.append(len(members))
            free[r] = done + g

    def held(r, t):
        """Requests replica ``r`` holds at ``t``: waiting, or in a batch that has not ended."""
        h = helds[r]
        while h and h[0] <= t:
            heapq.heappop(h)
        return len(h) + len(queues[r])

    last = R - 1
    for i, t in enumerate(a):
        for r in range(R):
            run_batches(r, t)
        if R == 1:
            r = 0
        else:  # the fewest held, the one after the last chosen among equals
            order = [(last + 1 + j) % R for j in range(R)]
            r = min(order, key=lambda q: held(q, t))
            last = r
        if limit is None or held(r, t) < bound:
            queues[r].append(i)
    for r in range(R):
        run_batches(r, math.inf)
    return np.asarray(lat), np.asarray(sizes)


def _check_replicas(replicas) -> int:
    if not (isinstance(replicas, (int, np.integer)) and not isinstance(replicas, bool) and replicas >= 1):
        raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
    return int(replicas)


def simulate(curve, rate: float, max_batch: int, max_wait_s: float = 0.0, overhead_s=None,
             n_requests: int = 20_000, seed: int = 0, timer: str = "idle",
             warmup_fraction: float = 0.05, tokens=None, service=None, gap_s: float = 0.0,
             spread=None, limit: int | None = None, replicas: int = 1) -> dict:
    """Latency percentiles a server would show at ``rate``: the batcher simulated, plus
    ``overhead_s`` (measured per-request samples of the path around it, or None).
    ``tokens``/``service``: a token budget of ``max_batch``; ``gap_s``: the replica's work
    after each batch; ``spread``: the measured batches' variability (see :func:`batch_latencies`).
    ``limit``: the most requests a replica holds (the rest turned away, ``rejected_fraction``;
    the percentiles are those of the requests let in, as a load record's are of its ``ok``).
    ``replicas``: that many behind a least-connections dispatcher (see :func:`batch_latencies`).
    The capacity is the mean curve's, times the replicas: pass factors that average 1 (the load
    records scale them so)."""
    lat, sizes = batch_latencies(curve, rate, max_batch, max_wait_s, n_requests, seed, timer, tokens, service,
                                 gap_s, spread, limit, replicas)
    kept = lat[int(warmup_fraction * len(lat)):]
    if overhead_s is not None and len(overhead_s):
        extra = np.asarray(overhead_s, dtype=float)
        kept = kept + np.random.default_rng(seed + 1).choice(extra, size=len(kept), replace=True)
    turned_away = np.isnan(kept)
    rejected = float(turned_away.mean()) if len(kept) else 0.0
    kept = kept[~turned_away]
    p50, p90, p99 = np.percentile(kept, [50, 90, 99])
    cap = capacity(curve, max_batch, gap_s, replicas) if tokens is None else \
        token_capacity(service, max_batch, tokens, seed=seed, gap_s=gap_s, replicas=replicas)
    return {"rate_per_s": float(rate), "latency_s_p50": float(p50), "latency_s_p90": float(p90),
            "latency_s_p99": float(p99), "latency_s_mean": float(kept.mean()),
            "mean_batch_size": float(np.mean(sizes)), "capacity_per_s": cap,
            "stable": rate < cap, "timer": timer, "limit": limit, "replicas": int(replicas),
            "rejected_fraction": rejected}


def token_service(samples) -> tuple[float, float]:
    """``(intercept_s, slope_s_per_token)`` of a least-squares line through ``(batch tokens,
    service seconds)`` samples (slope >= 0; one distinct size: a flat line at its mean)."""
    pts = [(int(t), float(s)) for t, s in samples if t >= 1 and s > 0 and math.isfinite(s)]
    if not pts:
        raise ValueError("no batch service times measured: did any request succeed?")
    t = np.array([p[0] for p in pts], dtype=float)
    s = np.array([p[1] for p in pts])
    if len(set(t.tolist())) < 2:
        return float(s.mean()), 0.0
    slope, intercept = np.polyfit(t, s, 1)
    slope = max(float(slope), 0.0)
    return max(float(intercept), 0.0) if slope > 0 else float(s.mean()), slope


def token_capacity(service, budget: int, tokens, n: int = 20_000, seed: int = 0, gap_s: float = 0.0,
                   replicas: int = 1) -> float:
    """Requests/s under a backlog with a token budget: requests (token counts drawn from
    ``tokens``) packed into batches in arrival order, each batch closed at the first request
    that does not fit, as Serve's batcher closes it; ``n`` requests over the sum of the
    batches' ``service(batch tokens)`` and ``gap_s`` after each; times ``replicas``."""
    g = _check_gap(gap_s)
    c = _draw_tokens(tokens, n, seed)
    total, batch = 0.0, 0
    for t in c.tolist():
        if batch + t > budget:
            total += float(service(batch)) + g
            batch = 0
        batch += t
    total += float(service(batch)) + g
    return _check_replicas(replicas) * int(n) / total


def capacity(curve, max_batch: int, gap_s: float = 0.0, replicas: int = 1) -> float:
    """Requests/s when every batch is full: ``max_batch / (service(max_batch) + gap_s)``, times
    ``replicas``."""
    return _check_replicas(replicas) * max_batch / (float(cost.service_times(curve, max_batch)[max_batch])
                                                   + _check_gap(gap_s))


def _check_gap(gap_s) -> float:
    if not (isinstance(gap_s, (int, float)) and math.isfinite(gap_s) and gap_s >= 0):
        raise ValueError(f"gap_s (the replica's work between batches) must be seconds >= 0, got {gap_s!r}")
    return float(gap_s)


def max_rate(curve, p99_target_s: float, max_batch: int, max_wait_s: float, overhead_s=None,
             n_requests: int = 20_000, seed: int = 0, timer: str = "idle", rtol: float = 0.01,
             gap_s: float = 0.0, replicas: int = 1) -> float:
    """Highest simulated rate whose p99 (with overhead) meets the target; 0 when none does."""
    top = 0.98 * capacity(curve, max_batch, gap_s, replicas)

    def ok(r):
        return simulate(curve, r, max_batch, max_wait_s, overhead_s, n_requests, seed, timer,
                        gap_s=gap_s, replicas=replicas)["latency_s_p99"] <= p99_target_s
    lo, hi = 0.0, top
    if ok(top):
        return top
    for _ in range(40):
        if hi - lo <= rtol * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
