"""An open-loop load generator for an Open Inference Protocol server, and its records.

Requests leave on a Poisson schedule fixed in advance (``rate`` per second), whether or
not earlier ones were answered -- the load a real population of users puts on a server
-- over asyncio HTTP (aiohttp). A run is bounded by a request count and a duration; each
request ends in exactly one of four ways:

``ok``        a 200 answer;
``rejected``  a 4xx or a 503 (the server said no: bad input, overload);
``failed``    any other status or a broken connection;
``lost``      no answer before the per-request deadline (``timeout_s``).

so ``sent == ok + rejected + failed + lost``. :func:`load_record` turns a run into one
record: counts, latency p50/p90/p99/max of the ``ok`` answers, achieved throughput, what
the replica reported (batch sizes, service times, the serving overhead around the
batcher, less the batches a request waited for on its way in where the server shares this
machine's clock) and the simulated p50/p99 (:mod:`bertg4.serve.simulate`) fed with those
measurements, beside a block-bootstrap interval of the measured ones
(:func:`percentile_interval`). The server's capacity, which ``--capacity-fractions`` loads at
fractions of, comes from a closed loop instead (:func:`run_closed`, :func:`measure_capacity`):
clients that send again as soon as they are answered, so that a full batch always waits.
"""
from __future__ import annotations

import asyncio
import json
import math
import time

import numpy as np

from . import simulate as S

OUTCOMES = ("ok", "rejected", "failed", "lost")
CAPACITY = "capacity"  # the kind of the closed-loop record: its rate is what the server answered, not Poisson's


def traffic(source: str = "sst2", n: int | None = None) -> list[str]:
    """Texts to send: ``sst2`` (GLUE SST-2 dev sentences), ``sample`` (32 sentences shipped
    with bertg4) or a text file with one text per line."""
    from .. import data as D
    if source == "sst2":
        texts = list(D.load_sst2("dev").first)
    elif source == "sample":
        texts = list(D.sample_sst().first)
    else:
        with open(source, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
        if not texts:
            raise ValueError(f"{source}: no texts (one per line)")
    return texts[:n] if n else texts


def infer_body(texts: list[str], input_name: str = "text") -> bytes:
    return json.dumps({"inputs": [{"name": input_name, "datatype": "BYTES", "shape": [len(texts)],
                                   "data": texts}]}).encode()


def _check_rate(rate) -> float:
    rate = float(rate)
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
    return rate


async def _send(session, url: str, body: bytes, timeout_s: float) -> dict:
    import aiohttp
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            payload = await r.read()
            status, headers = r.status, r.headers
    except asyncio.TimeoutError:
        return {"outcome": "lost", "latency_s": time.perf_counter() - t0, "status": None, "start": t0}
    except aiohttp.ClientError as e:
        return {"outcome": "failed", "latency_s": time.perf_counter() - t0, "status": None, "start": t0,
                "error": f"{type(e).__name__}: {e}"}
    now = time.perf_counter()
    out = {"latency_s": now - t0, "status": status, "start": t0, "end": now}  # this machine's perf_counter
    if status == 200:
        out["outcome"] = "ok"
        for h in ("batch", "batch-size", "batch-tokens", "request-tokens", "service-ms", "replica-ms", "batch-gap-ms",
                  "node", "replica", "clock"):
            if f"x-bertg4-{h}" in headers:
                out[h] = headers[f"x-bertg4-{h}"]
        out["body"] = payload
    else:
        out["outcome"] = "rejected" if 400 <= status < 500 or status == 503 else "failed"
        out["error"] = payload[:300].decode("utf-8", "replace")
    return out


def schedule(rate: float, n_requests: int, duration_s: float, warmup_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """Poisson send times (s from the start): every arrival of the first ``warmup_s`` seconds,
    then at most ``n_requests`` more, none after ``duration_s``. The warm-up's requests come
    on top of ``n_requests``, so a high rate still leaves requests to time after its warm-up."""
    rate = _check_rate(rate)
    if n_requests < 1 or not duration_s > 0 or warmup_s < 0:
        raise ValueError(f"n_requests ({n_requests!r}) and duration_s ({duration_s!r}) must be positive "
                         f"and warmup_s ({warmup_s!r}) not negative")
    if warmup_s >= duration_s:
        raise ValueError(f"warm-up of {warmup_s} s is not shorter than the run's {duration_s} s: "
                         "no request would be timed")
    rng = np.random.default_rng(seed)
    at = np.array([0.0])
    while at[-1] < warmup_s:  # enough arrivals to cover the warm-up, then n_requests beyond it
        n = int(rate * (warmup_s - at[-1])) + 16
        at = np.concatenate([at, at[-1] + np.cumsum(rng.exponential(1.0 / rate, n))])
    n_warm = int(np.searchsorted(at, warmup_s, side="left"))
    extra = n_requests - (len(at) - n_warm)
    if extra > 0:
        at = np.concatenate([at, at[-1] + np.cumsum(rng.exponential(1.0 / rate, extra))])
    at = at[:n_warm + n_requests]
    return at[at <= duration_s]


async def run_load(url: str, bodies, rate: float, n_requests: int = 200, duration_s: float = 30.0,
                   timeout_s: float = 10.0, seed: int = 0, keep_bodies: bool = False,
                   warmup_s: float = 0.0) -> dict:
    """Send ``bodies`` (cycled) at Poisson ``rate`` to ``url`` on :func:`schedule`: the
    requests of the first ``warmup_s`` seconds plus at most ``n_requests`` more, none
    scheduled after ``duration_s``; every request ends by ``timeout_s``. Returns the
    per-request results in send order and the schedule's span."""
    import aiohttp
    rate = _check_rate(rate)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    bodies = list(bodies)
    if not bodies:
        raise ValueError("no request bodies to send")
    at = schedule(rate, n_requests, duration_s, warmup_s, seed)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        tasks = []
        for k, t in enumerate(at):
            delay = t0 + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(_send(session, url, bodies[k % len(bodies)], timeout_s)))
        results = await asyncio.gather(*tasks)
        span = time.perf_counter() - t0
    for k, r in enumerate(results):
        r["sent_at"] = float(at[k])
        if not keep_bodies:
            r.pop("body", None)
    return {"results": results, "span_s": span, "schedule_s": float(at[-1]) if len(at) else 0.0,
            "rate_per_s": rate, "warmup_s": float(warmup_s)}


async def run_closed(url: str, bodies, concurrency: int, n_requests: int = 600, duration_s: float = 10.0,
                     timeout_s: float = 10.0, keep_bodies: bool = False) -> dict:
    """A closed loop: ``concurrency`` clients, each sending its next request (``bodies``
    cycled) as soon as its last one is answered, until ``n_requests`` have been sent or
    ``duration_s`` has passed; every request ends by ``timeout_s``. With more requests in
    flight than a batch holds, the server always has a full batch waiting when one ends, so
    what it answers per second is its capacity, all of its own work included. Returns the
    per-request results in send order (``sent_at``: s from the start) and the run's span."""
    import aiohttp
    c = int(concurrency)
    if c < 1 or n_requests < 1 or not duration_s > 0 or not timeout_s > 0:
        raise ValueError(f"concurrency ({concurrency!r}) and n_requests ({n_requests!r}) must be >= 1, "
                         f"duration_s ({duration_s!r}) and timeout_s ({timeout_s!r}) positive")
    bodies = list(bodies)
    if not bodies:
        raise ValueError("no request bodies to send")
    results: list = []
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()

        async def client():
            while len(results) < n_requests and time.perf_counter() - t0 < duration_s:
                k = len(results)
                slot = {"sent_at": time.perf_counter() - t0}
                results.append(slot)
                slot.update(await _send(session, url, bodies[k % len(bodies)], timeout_s))
        await asyncio.gather(*(client() for _ in range(c)))
        span = time.perf_counter() - t0
    for r in results:
        if not keep_bodies:
            r.pop("body", None)
    return {"results": results, "span_s": span, "schedule_s": span, "rate_per_s": len(results) / span,
            "concurrency": c, "warmup_s": 0.0}


def load(url: str, bodies, rate: float, **kw) -> dict:
    """:func:`run_load` from synchronous code (a script, a notebook: runs in a fresh thread
    when an event loop is already running there).

    For the run, this process's heap is frozen out of the garbage collector's view (when
    nothing else froze it) and handed back after: a full collection of a load generator that
    also holds a model (``--offline``) would otherwise pause every request in flight and count
    as server latency. (Two runs at once in one process share the freeze: the first to end
    hands it back.) ``client_gc``: the collector's pauses during the run; ``wall_start`` /
    ``wall_end``: its wall-clock span, to match the server's own pauses against."""
    return _run_sync(lambda: run_load(url, bodies, rate, **kw))


def closed(url: str, bodies, concurrency: int, **kw) -> dict:
    """:func:`run_closed` from synchronous code, as :func:`load` runs its open loop."""
    return _run_sync(lambda: run_closed(url, bodies, concurrency, **kw))


def _run_sync(make) -> dict:
    """The coroutine ``make()`` gives, run to its end with the heap frozen (see :func:`load`)."""
    import gc
    from ..system import GcPauses, freeze_heap
    froze = gc.get_freeze_count() == 0 and freeze_heap() > 0
    pauses = GcPauses().install()
    wall_start = time.time()
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run = asyncio.run(make())
        else:
            import concurrent.futures
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                run = ex.submit(asyncio.run, make()).result()
    finally:
        pauses.remove()
        if froze:
            gc.unfreeze()
    return {**run, "client_gc": pauses.summary(), "wall_start": wall_start, "wall_end": time.time()}


#: full batches whose requests were waiting (``x-bertg4-batch-gap-ms``), at least, before their
#: median gap is simulated (a run at a low rate, such as find_max's calibration, has few or none)
MIN_GAP_SAMPLES = 10


def _ms(seconds):
    return None if math.isnan(seconds) else 1e3 * seconds


def _pct(x, q):
    return float(np.percentile(x, q)) if len(x) else None


#: seconds of send times per block of the bootstrap (:func:`percentile_interval`)
CI_BLOCK_S = 0.5


def percentile_interval(sent_at, values, q: float, block_s: float = CI_BLOCK_S, n_boot: int = 1000,
                        level: float = 0.90, seed: int = 0) -> list[float] | None:
    """A ``level`` confidence interval of the ``q``-th percentile of ``values`` by a block
    bootstrap: the requests are cut into blocks of ``block_s`` seconds of send time, and blocks
    (not single requests) are drawn with replacement, so that the requests one stall or burst
    delays together stay together. A stall of one batch can make a whole run's p99 -- a few
    requests from one moment -- and an interval drawn from single requests would then look far
    narrower than the next run shows. None with fewer than two blocks."""
    t = np.asarray(sent_at, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or not block_s > 0:
        return None
    ids = np.floor((t - t.min()) / block_s).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids, v = ids[order], v[order]
    edges = np.flatnonzero(np.diff(ids)) + 1
    blocks = np.split(v, edges)
    if len(blocks) < 2:
        return None
    rng = np.random.default_rng(seed)
    boot = [np.percentile(np.concatenate([blocks[k] for k in rng.integers(0, len(blocks), len(blocks))]), q)
            for _ in range(int(n_boot))]
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def _batch_key(r: dict) -> tuple:
    """Which batch of which replica answered ``r``: its number (``x-bertg4-batch``), or, from a
    server that does not send it, the batch's service time and size (two batches can share them)."""
    if "batch" in r:
        return r.get("replica"), int(r["batch"])
    return r.get("replica"), r["service-ms"], r.get("batch-size")


CLOCK_SLACK_S = 0.0005


def _clock(r: dict) -> tuple[float, float, float, float]:
    arrived, start, end, answered = (float(x) for x in r["clock"].split())
    return arrived, start, end, answered


def shared_clock(rows: list) -> bool:
    """Whether the replicas' ``x-bertg4-clock`` times are on the load generator's own clock
    (``time.perf_counter``: one machine's monotonic clock on Linux): every answer entered its
    batch queue after it was sent and was answered before it came back. Two machines' monotonic
    clocks count from their own boots, so a server elsewhere breaks that order, unless the two
    clocks happen to differ by less than the network's time each way (plus
    :data:`CLOCK_SLACK_S`); so does a server that sends no clock."""
    if not rows or any("clock" not in r or "start" not in r for r in rows):
        return False
    try:
        clocks = [_clock(r) for r in rows]
    except ValueError:
        return False
    return all(r["start"] <= c[0] + CLOCK_SLACK_S and c[3] <= r["end"] + CLOCK_SLACK_S for r, c in zip(rows, clocks))


def _busy_spans(answered: list) -> dict:
    """Per replica (``x-bertg4-replica``), the times it computed batches: the union of the
    ``x-bertg4-clock`` batch spans of ``answered``, merged where they overlap (answers of one
    batch share a span; answers without a replica header all count as one replica's, which
    overstates the wait where several replicas send none), as
    ``(starts, lengths, compute time before each start)``. Answers without a readable clock
    are left out."""
    spans: dict = {}
    for r in answered:
        try:
            _, start, end, _ = _clock(r)
        except (KeyError, ValueError, AttributeError):  # no clock, not four times, null
            continue
        spans.setdefault(r.get("replica"), set()).add((start, max(end, start)))
    busy = {}
    for replica, pairs in spans.items():
        merged: list = []
        for start, end in sorted(pairs):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        se = np.array(merged)
        d = se[:, 1] - se[:, 0]
        busy[replica] = (se[:, 0], d, np.concatenate([[0.0], np.cumsum(d)]))
    return busy


def blocked_on_the_way_in(rows: list, answered: list) -> np.ndarray:
    """Seconds of each of ``rows``' way in (sent, to entering its replica's batch queue) during
    which that replica was computing a batch, from the ``x-bertg4-clock`` times of the batches
    that ``answered`` (the run's ``ok`` answers) belong to; the clocks must be shared
    (:func:`shared_clock`). A batch none of whose requests was answered (all failed or lost)
    is not known, and its time is not counted.

    The replica computes on its event loop, so a request that reaches it during a batch is
    read only when the batch ends: that wait is in the time outside the handler (latency minus
    ``x-bertg4-replica-ms``). The simulated queue makes the request wait for the batch in
    progress too, so the simulator takes this part out of the overhead it adds."""
    busy = _busy_spans(answered)

    def computed_by(replica, t: float) -> float:
        """The replica's compute time from the run's first batch to ``t``."""
        if replica not in busy:
            return 0.0
        s, d, cum = busy[replica]
        k = int(np.searchsorted(s, t, side="right")) - 1
        return 0.0 if k < 0 else float(cum[k] + min(t - s[k], d[k]))
    out = []
    for r in rows:
        arrived = _clock(r)[0]
        out.append(max(0.0, computed_by(r.get("replica"), arrived) - computed_by(r.get("replica"), r["start"])))
    return np.asarray(out)


def gc_fields(run: dict, server: dict) -> dict:
    """The garbage collector's long pauses (:data:`bertg4.system.LONG_GC_PAUSE_MS` and more) in a
    run: the load generator's own (``client_gc_*``), and those of the replica whose metadata was
    read after the run (``server_gc_*``: ``server["gc"]``, when the server reports it) that
    ended within the run's wall-clock span (its warm-up included; one machine's clock: a server on
    another machine needs its clock in step); ``server_gc_frozen_objects``: what that replica froze;
    ``server_gc_collections``: its collections per generation since it started."""
    out = {}
    client = run.get("client_gc")
    if client:
        out.update(client_gc_max_ms=client["max_ms"], client_gc_long_pauses_ms=[p[1] for p in client["long"]])
    gcs = server.get("gc")
    if gcs and "wall_start" in run:
        window = [p[1] for p in gcs.get("long", []) if run["wall_start"] <= p[0] <= run["wall_end"]]
        out.update(server_gc_long_pauses_ms=window, server_gc_replica=gcs.get("replica"),
                   server_gc_frozen_objects=gcs.get("frozen_objects"),
                   server_gc_collections=gcs.get("collections_by_generation"))
    return out


TRACE_FIELDS = ("sent_at", "outcome", "status", "latency_s", "start", "end", "batch", "batch-size",
                "batch-tokens", "request-tokens", "service-ms", "replica-ms", "batch-gap-ms", "replica", "clock")


def trace(run: dict) -> list[dict]:
    """A run's requests, one small dict each (what :data:`TRACE_FIELDS` the answer had), in
    send order: ``bertg4 loadtest --keep-requests`` writes them beside the records."""
    return [{k: r[k] for k in TRACE_FIELDS if k in r} for r in run["results"]]


def read_trace(path: str, kinds: tuple[str, ...] | None = None, outcome: str | None = None) -> list[dict]:
    """The requests ``bertg4 loadtest --keep-requests`` kept: ``requests.jsonl.gz`` (or the
    folder holding it), in the file's order, each with its level's ``level`` (its record's place
    in records.jsonl), ``kind`` and ``rate_per_s``; only the levels of ``kinds`` (``"loadtest"``,
    ``"find_max"``, ...) and the requests of ``outcome`` (``"ok"``, ...) when given."""
    import gzip
    import os
    if os.path.isdir(path):
        path = os.path.join(path, "requests.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if (kinds is None or r["kind"] in kinds) and (outcome is None or r["outcome"] == outcome)]


def load_record(run: dict, server: dict, warmup_s: float = 0.0, timer: str = "idle", seed: int = 0,
                n_sim: int = 20_000, keep_requests: bool = False) -> dict:
    """One record for one rate: counts, measured and simulated latency percentiles.

    ``server``: the model metadata's ``parameters`` (task, model, engine, batching).
    Requests sent in the first ``warmup_s`` count in ``sent`` etc. but not in the latency
    statistics. The simulation uses the service curve and the overhead samples of this run.
    A closed-loop run (:func:`run_closed`: ``run["concurrency"]``) is measured the same way but
    not simulated: its arrivals are its own answers, not Poisson's.
    """
    rec = _load_record(run, server, warmup_s, timer, seed, n_sim)
    if keep_requests:
        rec["requests"] = trace(run)
    return rec


def _load_record(run: dict, server: dict, warmup_s: float, timer: str, seed: int, n_sim: int) -> dict:
    res = run["results"]
    counts = {k: sum(r["outcome"] == k for r in res) for k in OUTCOMES}
    ok = [r for r in res if r["outcome"] == "ok"]
    timed = [r for r in ok if r["sent_at"] >= warmup_s]
    lat = np.array([r["latency_s"] for r in timed]) * 1e3
    rec = {"kind": "loadtest", "rate_per_s": run["rate_per_s"], "sent": len(res), **counts,
           "warmup_s": warmup_s, "timed": len(timed), "duration_s": run["span_s"],
           "achieved_per_s": len(ok) / run["schedule_s"] if run["schedule_s"] > 0 and ok else 0.0,
           "served_per_s": len(ok) / run["span_s"] if run["span_s"] > 0 else 0.0,
           "latency_ms_p50": _pct(lat, 50), "latency_ms_p90": _pct(lat, 90),
           "latency_ms_p99": _pct(lat, 99), "latency_ms_max": float(lat.max()) if len(lat) else None,
           "latency_ms_mean": float(lat.mean()) if len(lat) else None}
    # how far the run's own percentiles could move by chance (another run of the same length)
    sent = [r["sent_at"] for r in timed]
    rec["latency_ms_p50_ci90"] = percentile_interval(sent, lat, 50, seed=seed)
    rec["latency_ms_p99_ci90"] = percentile_interval(sent, lat, 99, seed=seed)
    rec["ci_block_s"] = CI_BLOCK_S
    for k in ("task", "model", "engine", "recipe", "dtype", "device", "device_name", "seq_length",
              "padding", "max_batch_size", "batch_wait_ms", "max_batch_tokens", "allocator",
              "float32_matmul", "max_ongoing_requests", "max_queued_requests", "num_replicas", "ingress",
              "haproxy_balance"):  # the replica's
        rec[k] = server.get(k)
    rec.update(gc_fields(run, server))
    errors = sorted({r.get("error", "")[:120] for r in res if r["outcome"] != "ok"})
    rec["errors"] = errors[:5]
    rec["replicas_seen"] = len({r.get("replica") for r in ok if r.get("replica")})
    rec["nodes_seen"] = len({r.get("node") for r in ok if r.get("node")})
    if rec["replicas_seen"] > 1 and "server_gc_long_pauses_ms" in rec:
        rec["server_gc_long_pauses_ms"] = None  # the metadata came from one replica of several: unknown
    with_headers = [r for r in timed if "service-ms" in r and "replica-ms" in r]
    if not with_headers:
        return {**rec, "p50_ms_simulated": None, "p99_ms_simulated": None}
    replicas = simulated_replicas(server, rec["replicas_seen"])
    rec["simulated_replicas"] = replicas
    note = replicas_note(server, replicas, rec["replicas_seen"])
    if note:
        rec["simulated_note"] = note
    B, wait_s = int(server["max_batch_size"]), float(server["batch_wait_ms"]) / 1e3
    batches = [(int(r["batch-size"]), float(r["service-ms"]) / 1e3) for r in with_headers]
    curve = S.curve_from_batches(batches, B)
    overhead = np.array([r["latency_s"] - float(r["replica-ms"]) / 1e3 for r in with_headers])
    # what the simulator adds: the time outside the handler, less the batches in progress it held for
    clock = shared_clock(with_headers)
    blocked = blocked_on_the_way_in(with_headers, [r for r in ok if "clock" in r]) if clock else None
    added = np.maximum(overhead - blocked, 0.0) if clock else overhead
    budget = server.get("max_batch_tokens")
    tok = {}
    if budget:  # a token budget: batches fill by tokens, service time is a line in the batch's tokens
        tok["tokens"] = [int(r["request-tokens"]) for r in with_headers]
        a, b = S.token_service([(int(r["batch-tokens"]), float(r["service-ms"]) / 1e3) for r in with_headers])
        tok["service"] = lambda t, a=a, b=b: a + b * t
        rec.update(service_ms_intercept=1e3 * a, service_ms_per_token=1e3 * b,
                   request_tokens_mean=float(np.mean(tok["tokens"])))
    # the distinct batches, each once: their sizes, gaps and service times over the curve's (or the token line's)
    distinct = {_batch_key(r): r for r in with_headers}.values()
    # one gap per batch (its answers share the replica and the batch's number), not per answer
    gaps = list({_batch_key(r): float(r["batch-gap-ms"]) / 1e3 for r in with_headers if "batch-gap-ms" in r}.values())
    gap = float(np.median(gaps)) if len(gaps) >= MIN_GAP_SAMPLES else 0.0
    try:
        if budget:
            spread = S.service_spread([(int(r["batch-tokens"]), float(r["service-ms"]) / 1e3) for r in distinct],
                                      tok["service"])
        else:
            spread = S.service_spread([(int(r["batch-size"]), float(r["service-ms"]) / 1e3) for r in distinct],
                                      lambda k: curve[k])
    except ValueError:  # nothing the curve predicts a positive time for: no spread to draw from
        spread = None
    spread_mean = None
    if spread is not None:  # the mean curve's (or line's) capacity holds for factors that average 1
        spread_mean = float(np.mean(spread))
        spread = spread / spread_mean

    measured = {
        # requests per batch over the batches, as the simulator counts them (a request's own batch is
        # larger on average: a batch of four answers four requests)
        "mean_batch_size": float(np.mean([int(r["batch-size"]) for r in distinct])),
        "mean_batch_size_per_request": float(np.mean([k for k, _ in batches])),
        "service_ms_curve": {str(k): 1e3 * v for k, v in curve.items()},
        "overhead_ms_p50": _pct(overhead * 1e3, 50), "overhead_ms_p99": _pct(overhead * 1e3, 99),
        "clock_shared": clock,
        "overhead_blocked_ms_mean": float(1e3 * blocked.mean()) if clock else None,
        "overhead_blocked_ms_p99": _pct(blocked * 1e3, 99) if clock else None,
        "overhead_simulated_ms_p50": _pct(added * 1e3, 50), "overhead_simulated_ms_p99": _pct(added * 1e3, 99),
        "replica_ms_p50": _pct([float(r["replica-ms"]) for r in with_headers], 50),
        "batch_gap_ms_p50": _pct(np.array(gaps) * 1e3, 50), "batch_gap_samples": len(gaps),
        "simulated_gap_ms": 1e3 * gap,
    }
    unsimulated = {"p50_ms_simulated": None, "p99_ms_simulated": None, "p50_rel_error": None, "p99_rel_error": None}
    if replicas is None:  # several answered, and the server did not say how many serve side by side
        return {**rec, **measured, **unsimulated, "capacity_service_per_s": None,
                "simulated_note": f"not simulated: {rec['replicas_seen']} replicas answered, and the server's "
                                  "metadata does not say how many serve at once (num_replicas: autoscaling, or "
                                  "a server before it said)"}
    if run.get("concurrency"):  # a closed loop: its arrivals are the answers' own, not Poisson's
        service_cap = S.capacity(curve, B, gap, replicas) if not budget else \
            S.token_capacity(tok["service"], int(budget), tok["tokens"], seed=seed, gap_s=gap, replicas=replicas)
        return {**rec, **measured, **unsimulated, "concurrency": run["concurrency"],
                "capacity_service_per_s": service_cap}

    limit = queue_limit(server)

    def simulated(factors, extra=added):
        out = S.simulate(curve, run["rate_per_s"], int(budget or B), wait_s, extra, n_requests=n_sim, seed=seed,
                         timer=timer, gap_s=gap, spread=factors, limit=limit, replicas=replicas, **tok)
        if not out["stable"] and limit is None:  # at or past capacity an unbounded queue grows without end
            out.update(latency_s_p50=math.nan, latency_s_p90=math.nan, latency_s_p99=math.nan)
        return out
    mean_curve = simulated(None)  # every batch of a size takes the curve's mean time
    # each batch a draw from the measured spread: the headline where the overhead is without the
    # blocked waits (a queue's tail grows with the spread). Without a shared clock (all of the
    # overhead kept) the spread is not simulated: results/2026-12-01_cpu_serving_spread found it
    # no better than the mean curve there.
    with_spread = simulated(spread) if spread is not None and clock else None
    sim = with_spread or mean_curve
    # the earlier headline beside it: the mean curve with every sample of the time outside the
    # handler, the batches in progress a request waited for included
    raw = simulated(None, overhead) if clock else mean_curve
    rec.update({
        **measured,
        "capacity_per_s": sim["capacity_per_s"],
        "simulator_timer": timer,
        "simulated_service": "measured spread" if with_spread else "mean curve",
        "simulated_overhead": "less the batches waited for on the way in" if clock else "all of it",
        "simulated_stable": sim["stable"],
        "p50_ms_simulated": _ms(sim["latency_s_p50"]), "p90_ms_simulated": _ms(sim["latency_s_p90"]),
        "p99_ms_simulated": _ms(sim["latency_s_p99"]),
        "mean_batch_size_simulated": sim["mean_batch_size"],
        # the server's bound on requests held, which the simulated server turns requests away at too;
        # the measured share counts the requests sent after the warm-up, as the simulated one leaves
        # out its own first part
        "simulated_limit": limit, "rejected_fraction": _share_rejected(res, warmup_s),
        "rejected_fraction_simulated": sim["rejected_fraction"],
        "service_spread_batches": 0 if spread is None else len(spread),
        "service_spread_mean_raw": spread_mean,  # before the factors were scaled to average 1
        "service_spread_p10_p90": None if spread is None else [float(np.percentile(spread, 10)),
                                                              float(np.percentile(spread, 90))],
        "p50_ms_simulated_mean_curve": _ms(mean_curve["latency_s_p50"]),
        "p99_ms_simulated_mean_curve": _ms(mean_curve["latency_s_p99"]),
        "p50_ms_simulated_raw_overhead": _ms(raw["latency_s_p50"]),
        "p99_ms_simulated_raw_overhead": _ms(raw["latency_s_p99"]),
    })
    for q in ("p50", "p99"):
        m = rec[f"latency_ms_{q}"]
        for key, s in ((f"{q}_rel_error", rec[f"{q}_ms_simulated"]),
                       (f"{q}_rel_error_mean_curve", rec[f"{q}_ms_simulated_mean_curve"]),
                       (f"{q}_rel_error_raw_overhead", rec[f"{q}_ms_simulated_raw_overhead"])):
            rec[key] = (s - m) / m if m and s is not None else None
        ci, sim_q = rec[f"latency_ms_{q}_ci90"], rec[f"{q}_ms_simulated"]
        rec[f"{q}_simulated_in_ci90"] = None if ci is None or sim_q is None else bool(ci[0] <= sim_q <= ci[1])
    return rec


def _share_rejected(results: list, warmup_s: float) -> float | None:
    after = [r for r in results if r["sent_at"] >= warmup_s]
    return sum(r["outcome"] == "rejected" for r in after) / len(after) if after else None


def queue_limit(server: dict) -> int | None:
    """The most requests one replica holds before Serve answers 503: ``max_ongoing_requests``
    (running, or waiting in the replica's batcher) plus ``max_queued_requests`` (waiting for one
    of those places), as the server's metadata reports them; None when it does not, or when the
    queue is unbounded (``max_queued_requests`` -1)."""
    ongoing, queued = server.get("max_ongoing_requests"), server.get("max_queued_requests")
    if not isinstance(ongoing, int) or not isinstance(queued, int) or queued < 0:
        return None
    return ongoing + queued


def server_info(url: str, name: str, timeout_s: float = 10.0) -> dict:
    """The served model's metadata parameters (``GET /v2/models/{name}``)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"{url}/v2/models/{name}", timeout=timeout_s) as r:
            meta = json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: model {name!r} metadata answered {e.code}: "
                           f"{e.read()[:200].decode('utf-8', 'replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"no server at {url} ({getattr(e, 'reason', e)}); start one with bertg4 serve") from None
    return {**meta["parameters"], "inputs": [i["name"] for i in meta["inputs"]]}


def _server_gc(url: str, name: str, timeout_s: float) -> dict | None:
    """The ``gc`` parameters of the server's metadata now, or None when it has none or cannot say."""
    try:
        return server_info(url, name, timeout_s).get("gc")
    except (RuntimeError, ValueError, KeyError, OSError):  # no answer, not JSON, not model metadata
        return None


def bodies_for(info: dict, texts: list[str], texts_per_request: int = 1) -> list[bytes]:
    """Request bodies of ``texts_per_request`` texts each (one-sentence tasks)."""
    if info["inputs"] != ["text"]:
        raise ValueError(f"the load generator sends one-sentence texts; this model takes {info['inputs']}")
    k = int(texts_per_request)
    if k < 1:
        raise ValueError(f"texts per request must be >= 1, got {k}")
    return [infer_body([texts[(i + j) % len(texts)] for j in range(k)]) for i in range(0, len(texts), k)]


def sequential_latency(url: str, bodies, n: int = 20, timeout_s: float = 10.0) -> dict:
    """One request at a time: the single-request latency (median and p99, ms)."""
    import urllib.request
    lat = []
    for k in range(n):
        req = urllib.request.Request(url, data=bodies[k % len(bodies)], headers={"content-type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            r.read()
        lat.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1e3
    return {"single_ms_p50": float(np.median(ms)), "single_ms_p99": float(np.percentile(ms, 99)), "n": n}


def sweep(url: str, name: str, rates, texts, n_requests: int = 200, duration_s: float = 30.0,
          timeout_s: float = 10.0, warmup_s: float = 1.0, seed: int = 0, texts_per_request: int = 1,
          timer: str = "idle", log=None, keep_requests: bool = False) -> list[dict]:
    """One record per rate, measured one after another against a running server: at each
    rate the requests of the first ``warmup_s`` seconds (left out of the statistics) and at
    most ``n_requests`` timed ones, none sent after ``duration_s``. ``keep_requests``: each
    record holds its run's :func:`trace` too (``requests``)."""
    info = server_info(url, name)
    bodies = bodies_for(info, texts, texts_per_request)
    infer = f"{url}/v2/models/{name}/infer"
    out = []
    for k, rate in enumerate(rates):
        run = load(infer, bodies, rate, n_requests=n_requests, duration_s=duration_s,
                   timeout_s=timeout_s, seed=seed + k, warmup_s=warmup_s)
        after = _server_gc(url, name, timeout_s)  # the replica's collector pauses, read after the run
        rec = load_record(run, {**info, "gc": after}, warmup_s=warmup_s, timer=timer, seed=seed,
                          keep_requests=keep_requests)
        rec["texts_per_request"] = texts_per_request
        out.append(rec)
        if log:
            log(format_line(rec))
    return out


def measure_capacity(url: str, name: str, texts, n_requests: int = 600, duration_s: float = 10.0,
                     timeout_s: float = 10.0, seed: int = 100, warmup_s: float = 1.0, concurrency: int | None = None,
                     log=None, keep_requests: bool = False) -> dict:
    """The server's capacity: the requests per second it answers in a closed loop
    (:func:`run_closed`) of ``concurrency`` clients (default: twice its max batch, times the
    replicas its metadata says it runs), so that a full batch is always waiting when one ends -- every request of one text, at most
    ``n_requests`` over at most ``duration_s``. The answers to requests sent after ``warmup_s``
    over the time they were sent in are ``capacity_per_s``: everything the replica's CPU does
    is in it (answering, reading and forming batches, the HTTP stack), and on a small machine
    the load generator's share too. ``capacity_service_per_s`` is what the batches' service
    times measured inside the replica (and the gap between them) would allow alone.

    A closed loop sends no more than the server answers, so it stays within the server's queue
    bounds (``max_ongoing_requests`` defaults to four batches): a flood of 503s would measure
    the proxy and the load generator instead. A request rejected, failed or lost in it is an
    error: the capacity would not be the server's."""
    info = server_info(url, name)
    B = int(info.get("max_batch_size") or 1)
    c = int(concurrency or 2 * B * (info.get("num_replicas") or 1))
    if not 0 <= warmup_s < duration_s:
        raise ValueError(f"warm-up of {warmup_s} s must be >= 0 and shorter than the run's {duration_s} s")
    run = closed(f"{url}/v2/models/{name}/infer", bodies_for(info, texts), c, n_requests=n_requests,
                 duration_s=duration_s, timeout_s=timeout_s)
    rec = load_record(run, {**info, "gc": _server_gc(url, name, timeout_s)}, warmup_s=warmup_s, seed=seed,
                      keep_requests=keep_requests)
    res = run["results"]
    if rec["ok"] < rec["sent"]:
        raise RuntimeError(f"the closed loop of {c} clients got {rec['sent'] - rec['ok']} of {rec['sent']} requests not answered "
                           f"(rejected {rec['rejected']}, failed {rec['failed']}, lost {rec['lost']}): "
                           f"{rec['errors']}; the capacity would not be the server's (fewer clients: "
                           "--capacity-concurrency)")
    steady = [r["sent_at"] for r in res if r["sent_at"] >= warmup_s]
    if len(steady) < 2 or steady[-1] <= warmup_s:
        raise RuntimeError(f"the closed loop sent {len(steady)} requests after its {warmup_s} s warm-up: too few to "
                           "measure a capacity with (more --requests or a longer --duration)")
    cap = (len(steady) - 1) / (steady[-1] - warmup_s)
    rec.setdefault("capacity_service_per_s", None)  # (a server whose answers say nothing of their batches)
    rec.update(kind=CAPACITY, rate_per_s=cap, capacity_per_s=cap, concurrency=c,
               capacity_source=f"answered per second in a closed loop of {c} clients (twice the max batch "
               f"of {B} times the replicas by default), after a {warmup_s:g} s warm-up")
    if log:
        log(format_line(rec))
    return rec


def meets_target(r: dict, p99_target_ms: float) -> bool:
    """A load level counts at a p99 target when its measured p99 meets it and no request was
    rejected, failed or lost."""
    return (r.get("latency_ms_p99") is not None and r["latency_ms_p99"] <= p99_target_ms
            and r["lost"] == 0 and r["failed"] == 0 and r["rejected"] == 0)


def simulated_replicas(server: dict, seen: int) -> int | None:
    """How many replicas a load record simulates: the deployment's ``num_replicas`` where the
    server's metadata gives it (a replica replaced in the middle of a run answers under a new
    name, so the names seen can be more than served at once), else one where at most one
    answered; None where several answered and the metadata does not say (autoscaling)."""
    n = server.get("num_replicas")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        return n
    return 1 if seen <= 1 else None


def replicas_note(server: dict, replicas: int | None, seen: int) -> str | None:
    """What a record's simulation of ``replicas`` does not match in this server, or None."""
    notes = []
    if replicas and replicas > 1:
        ing, balance = server.get("ingress"), server.get("haproxy_balance")
        if ing != "haproxy" or balance != "leastconn":
            notes.append(f"simulated as {replicas} replicas behind HAProxy's leastconn, each with its own queue "
                         f"bound; this server's ingress is {ing or 'not reported'}"
                         + (f" (balance {balance})" if ing == "haproxy" else
                            "" if ing is None else " (Serve's proxy compares two replicas' queues and holds one "
                            "queue for them all)"))
    if replicas and seen > replicas:
        notes.append(f"{seen} replicas answered, the deployment runs {replicas} (num_replicas): a replica replaced, "
                     "or the deployment rescaled after the replica that gave the metadata started")
    return "; ".join(notes) or None


def serving_replicas(records: list[dict]) -> int:
    """The most replicas that served side by side in any one of these load records: those it
    simulated (the deployment's ``num_replicas``), else the replicas that answered it (0: none
    said). A replica replaced in the middle of a run is one, not two."""
    return max((r.get("simulated_replicas") or r.get("replicas_seen") or 0 for r in records), default=0)


def bracket(levels: list[dict], p99_target_ms: float, capacity_per_s: float | None = None
            ) -> tuple[float, float | None] | None:
    """Where the highest rate meeting ``p99_target_ms`` lies, from load levels already measured
    at the same server (open-loop records; a closed-loop capacity record counts only as
    ``capacity_per_s``): ``(lo, hi)``, ``lo`` the highest offered rate that met the target (0.0
    when none did) and ``hi`` the lowest above it that did not, or the closed-loop capacity when
    that is lower (offered at the capacity, the queue grows for as long as the level lasts), or
    None when nothing bounds it. None when no open-loop level was measured."""
    open_loop = [r for r in levels if r.get("kind") != CAPACITY and r.get("rate_per_s") is not None]
    if not open_loop:
        return None
    lo = max((r["rate_per_s"] for r in open_loop if meets_target(r, p99_target_ms)), default=0.0)
    above = [r["rate_per_s"] for r in open_loop if not meets_target(r, p99_target_ms) and r["rate_per_s"] > lo]
    if capacity_per_s is not None and capacity_per_s > lo:
        above.append(float(capacity_per_s))
    return lo, min(above, default=None)


def find_max(url: str, name: str, p99_target_ms: float, texts, n_requests: int = 300,
             duration_s: float = 30.0, timeout_s: float = 10.0, warmup_s: float = 1.0, steps: int = 4,
             seed: int = 0, timer: str = "idle", log=None, keep_requests: bool = False,
             levels: list[dict] | None = None, capacity_per_s: float | None = None) -> dict:
    """The highest measured rate whose p99 meets ``p99_target_ms`` (and nothing lost or failed).

    Without ``levels``, a calibration run at a low rate measures the service curve and
    overhead; the simulator fed with them proposes a rate; then ``steps`` measured runs bisect
    between the highest rate that met the target and the lowest that did not (or go 1.5 x
    higher while every rate meets it). With ``levels`` (load levels this run already measured at
    the same target, e.g. fractions of the capacity) and ``capacity_per_s`` (the closed-loop
    capacity), the search starts from what they bracket (:func:`bracket`) and spends every
    step inside it: no calibration, and no step past the capacity. Returns every record, the
    best of them and the bracket it started from (``start``: ``[lo, hi]``, hi None if open).
    """
    info = server_info(url, name)
    B, wait_s = int(info["max_batch_size"]), float(info["batch_wait_ms"]) / 1e3
    single = sequential_latency(f"{url}/v2/models/{name}/infer", bodies_for(info, texts), n=10, timeout_s=timeout_s)

    def meets(r):
        return meets_target(r, p99_target_ms)
    start = bracket(levels or [], p99_target_ms, capacity_per_s)
    records = []
    if start is not None:
        lo, hi = start
        rate = 0.5 * (lo + hi) if hi is not None else 1.5 * lo
    else:
        calib_rate = max(0.5, 0.5 * 1e3 / single["single_ms_p50"])
        records = sweep(url, name, [calib_rate], texts, n_requests, duration_s, timeout_s, warmup_s, seed,
                        timer=timer, log=log, keep_requests=keep_requests)
        cal = records[0]
        lo, hi = (cal["rate_per_s"] if meets(cal) else 0.0), None
        rate = 2 * calib_rate
        # (a token budget, or replicas the record could not simulate: bisect only)
        if cal.get("service_ms_curve") and not info.get("max_batch_tokens") and cal.get("simulated_replicas"):
            curve = S.curve_from_ms(cal["service_ms_curve"])
            guess = S.max_rate(curve, p99_target_ms / 1e3, B, wait_s, [cal["overhead_ms_p50"] / 1e3], seed=seed,
                               timer=timer, gap_s=cal["simulated_gap_ms"] / 1e3,
                               replicas=cal["simulated_replicas"])
            rate = guess if guess > lo else rate
        if lo == 0.0:
            rate, hi = 0.5 * calib_rate, calib_rate
        start = (lo, hi)
    for k in range(steps):
        rec = sweep(url, name, [rate], texts, n_requests, duration_s, timeout_s, warmup_s, seed + 1 + k,
                    timer=timer, log=log, keep_requests=keep_requests)[0]
        records.append(rec)
        if meets(rec):
            lo = rate
        else:
            hi = rate
        rate = 0.5 * (lo + hi) if hi is not None else 1.5 * rate
    best = max((r for r in records if meets(r)), key=lambda r: r["achieved_per_s"], default=None)
    return {"records": records, "best": best, "single": single, "p99_target_ms": p99_target_ms,
            "start": list(start)}


def format_line(r: dict) -> str:
    def f(x, spec=".1f"):
        return "—" if x is None else format(x, spec)
    gc_cell = _gc_cell(r)
    return (f"rate {r['rate_per_s']:.2f}/s: sent {r['sent']} ok {r['ok']} rejected {r['rejected']} "
            f"failed {r['failed']} lost {r['lost']}; achieved {r['achieved_per_s']:.2f}/s; "
            f"p50 {f(r['latency_ms_p50'])} p90 {f(r['latency_ms_p90'])} p99 {f(r['latency_ms_p99'])} "
            f"max {f(r['latency_ms_max'])} ms; simulated p50 {f(r.get('p50_ms_simulated'))} "
            f"p99 {f(r.get('p99_ms_simulated'))} ms; mean batch {f(r.get('mean_batch_size'), '.2f')}"
            + (f"; GC pauses >= 5 ms: {gc_cell} (server/client)" if gc_cell != "—" else ""))


def _gc_cell(r: dict) -> str:
    """``server/client`` counts of long collector pauses in a run, with the longest, or — if unknown."""
    parts = []
    for side in ("server", "client"):
        p = r.get(f"{side}_gc_long_pauses_ms")
        parts.append("?" if p is None else (f"{len(p)} (max {max(p):.0f} ms)" if p else "0"))
    return "—" if parts == ["?", "?"] else "/".join(parts)


def _errors(r: dict, model: str) -> str:
    """The p50/p99 errors of one of the simulations beside a record's headline (``mean_curve``,
    ``raw_overhead``)."""
    e50, e99 = r.get(f"p50_rel_error_{model}"), r.get(f"p99_rel_error_{model}")
    return "—" if e50 is None or e99 is None else f"{e50:+.0%} / {e99:+.0%}"


def format_table(records: list[dict]) -> str:
    """A markdown table of load records. ``sim``: the headline simulation (the measured spread of
    service times, the time outside the handler less the batches waited for on the way in);
    ``blocked ms``: that wait, a request's mean; beside them the errors of the mean curve with the
    same overhead, and of the mean curve with all of it (the headline before the clock was read)."""
    head = ("| run | rate/s | sent | ok | rejected | failed | lost | achieved/s | p50 ms | p90 ms | p99 ms "
            "| p99 90% interval | max ms "
            "| sim p50 ms | sim p99 ms | p50 err | p99 err | blocked ms | p50/p99 err, mean curve "
            "| p50/p99 err, mean curve, all overhead | mean batch | GC pauses >= 5 ms, server/client |\n"
            "|---|" + "---:|" * 17 + "---|---|---:|---|")

    def f(x, spec=".1f"):
        return "—" if x is None else format(x, spec)

    def ci(x):
        return "—" if not x else f"{x[0]:.1f}-{x[1]:.1f}"
    rows = [f"| {r.get('kind', 'loadtest')} | {r['rate_per_s']:.2f} | {r['sent']} | {r['ok']} | {r['rejected']} | {r['failed']} | {r['lost']} "
            f"| {r['achieved_per_s']:.2f} | {f(r['latency_ms_p50'])} | {f(r['latency_ms_p90'])} "
            f"| {f(r['latency_ms_p99'])} | {ci(r.get('latency_ms_p99_ci90'))} | {f(r['latency_ms_max'])} "
            f"| {f(r.get('p50_ms_simulated'))} "
            f"| {f(r.get('p99_ms_simulated'))} | {f(r.get('p50_rel_error'), '+.0%')} "
            f"| {f(r.get('p99_rel_error'), '+.0%')} | {f(r.get('overhead_blocked_ms_mean'))} "
            f"| {_errors(r, 'mean_curve')} "
            f"| {_errors(r, 'raw_overhead')} "
            f"| {f(r.get('mean_batch_size'), '.2f')} | {_gc_cell(r)} |"
            for r in records]
    return "\n".join([head, *rows])


def plot(records: list[dict], ax=None):
    """Measured (solid, with the 90 % interval of each measured percentile as an error bar where
    the record has one; an interval that does not hold the run's own percentile is drawn out to
    it) and simulated (dashed) p50 and p99 latency against the offered rate. The closed-loop
    capacity record is left out: its rate is what the server answered, not an offered Poisson
    rate."""
    import matplotlib.pyplot as plt
    rs = sorted((r for r in records if r.get("latency_ms_p50") is not None and r.get("kind") != CAPACITY),
                key=lambda r: r["rate_per_s"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4))
    else:
        fig = ax.figure
    x = [r["rate_per_s"] for r in rs]
    for q, color in (("p50", "tab:blue"), ("p99", "tab:red")):
        y = [r[f"latency_ms_{q}"] for r in rs]
        lo, hi = [], []
        for r, v in zip(rs, y):
            ci = r.get(f"latency_ms_{q}_ci90")
            # a bootstrap interval need not hold the run's own percentile: the bar then ends at it
            lo.append(max(v - ci[0], 0.0) if ci else 0.0)
            hi.append(max(ci[1] - v, 0.0) if ci else 0.0)
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", color=color, capsize=3,
                    label=f"{q} measured (90 % interval)")
        ax.plot(x, [r.get(f"{q}_ms_simulated") for r in rs], "s--", color=color, alpha=0.7,
                label=f"{q} simulated")
    if rs:
        r0 = rs[0]
        ax.set_title(f"{r0.get('model')} {r0.get('task')} on {r0.get('device_name')}: max batch "
                     f"{r0.get('max_batch_size')}, wait {r0.get('batch_wait_ms')} ms", fontsize=9)
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, Poisson)")
    ax.set_ylabel("latency per request (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
