"""The Ray Serve application: a replica holding a :class:`~bertg4.predictor.Predictor`
behind an Open Inference Protocol (KServe v2 REST) ingress, with dynamic batching.

Ray Serve does the serving: the HTTP proxy, routing, replicas, autoscaling and the
bounded queues (``max_ongoing_requests`` per replica, ``max_queued_requests`` in front of
them: past both the proxy answers 503) are its own; ``@serve.batch`` groups concurrent
requests into one model batch, counting texts (``batch_size_fn``) so that one batch never
holds more than ``max_batch_size`` rows -- or, with ``max_batch_tokens``, counting tokens, so
that a batch never holds more than that many. This module only says what a replica does with
a batch (:func:`run_batch`, :func:`answer`) and which routes it serves.

The model call runs on the replica's event loop: while a batch computes, requests queue,
and the next batch takes every request that arrived meanwhile (up to ``max_batch_size``)
-- the dynamic batching that :func:`bertg4.cost.simulate` models. Every answer carries
headers with what happened inside the replica (``x-bertg4-batch``: its batch's number in this
replica, ``x-bertg4-batch-size``: requests in its
batch, ``x-bertg4-service-ms``: the batch's compute time, ``x-bertg4-replica-ms``: the
request's time from entering the batch queue to its result, ``x-bertg4-batch-gap-ms``: the
replica's work between the previous batch and this full one while requests waited,
``x-bertg4-clock``: when the request entered the batch queue, its batch started and ended and
it was answered, on the replica's ``time.perf_counter`` (on Linux the machine's monotonic clock,
which a load generator on the same machine shares),
``x-bertg4-node`` and ``x-bertg4-replica``): the load generator builds its service-time curve
and the simulator's gap between batches from them.

Once its model is warmed up, a replica freezes its heap out of Python's garbage collector
(:func:`bertg4.system.freeze_heap`; ``freeze_gc`` False, ``serve --no-freeze-gc``, leaves it),
so that a full collection does not stop the event loop to scan torch, Ray and FastAPI; the
model metadata's ``gc`` says what the answering replica froze and every collector pause of
5 ms or more since, which the load generator matches against each run.
"""
# no `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time

import dataclasses
import gc
import json
import math
import os
import time
import warnings

import numpy as np

from ..system import GcPauses, allocator, freeze_heap
from .protocol import Limits, ProtocolError, check_body_size, metadata, parse_infer, response


def _matmul_label(predictor):
    """Which library ran the predictor's float32 matmuls (:func:`bertg4.pt.matmul.label`),
    imported here only: this module stays free of torch until a replica holds a predictor."""
    from ..pt.matmul import label
    return label(predictor)


#: everything a replica needs to build its predictor and batch (all JSON-serialisable)
DEFAULTS = {"name": "bert", "model": "embedded", "task": "SST", "engine": "pt", "recipe": "baseline",
            "dtype": None, "device": "cpu", "seq_length": 128, "vocab": None, "config": None, "seed": 0,
            "exported_model": None, "padding": None, "threads": None, "freeze_gc": True,
            "max_batch_size": 8, "batch_wait_ms": 10.0, "max_batch_tokens": None,
            "max_texts": Limits.max_texts, "max_chars": Limits.max_chars,
            "max_body_bytes": Limits.max_body_bytes}


def haproxy_balance() -> str:
    """HAProxy's balance algorithm in the config Ray writes, as this environment sets it."""
    return os.environ.get("RAY_SERVE_HAPROXY_BALANCE_ALGORITHM", "leastconn")


def ingress() -> dict:
    """What stands in front of this replica, from the environment its Ray instance was started
    with: ``"haproxy"`` (Serve's HAProxy ingress, with its ``haproxy_balance`` algorithm),
    ``"proxy, direct ingress"`` (Serve's proxy, and the replica's own HTTP server beside it) or
    ``"proxy"``. The load records simulate several replicas as HAProxy dispatches to them."""
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        return {"ingress": "haproxy", "haproxy_balance": haproxy_balance()}
    if os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1":
        return {"ingress": "proxy, direct ingress"}
    return {"ingress": "proxy"}


def _queue_bounds(config) -> dict:
    """``max_ongoing_requests`` and ``max_queued_requests`` of a replica's deployment config
    (None each where it does not say): past both, Serve answers 503. Beside them
    ``num_replicas``: how many replicas the deployment runs, None where an autoscaling config
    sets it (the load records simulate that many replicas)."""
    out = {}
    for k in ("max_ongoing_requests", "max_queued_requests", "num_replicas"):
        v = getattr(config, k, None)
        out[k] = int(v) if isinstance(v, int) and not isinstance(v, bool) else None
    if getattr(config, "autoscaling_config", None) is not None:
        out["num_replicas"] = None
    return out


def load_predictor(spec: dict):
    """The predictor a spec names: ``bertg4.load`` arguments, or an export directory."""
    if spec.get("exported_model"):
        from ..deploy import _load_exported
        from ..exported import MANIFEST
        path = spec["exported_model"]
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: not a bertg4 export directory (it does not exist)")
        manifest = os.path.join(path if os.path.isdir(path) else os.path.dirname(path), MANIFEST)
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f"{path}: no {MANIFEST}; not a bertg4 export directory")
        with open(manifest, encoding="utf-8") as f:
            engine = json.load(f).get("engine")
        return _load_exported(engine, path, spec.get("device") or "cpu")
    from ..api import load
    return load(spec["model"], task=spec["task"], engine=spec["engine"], recipe=spec["recipe"],
                device=spec["device"], seq_length=spec["seq_length"], dtype=spec.get("dtype"),
                config=spec.get("config"), vocab=spec.get("vocab"), seed=spec.get("seed", 0))


def _raw_outputs(predictor, batch, padding):
    """Raw outputs of one formed batch, length-aware (``run_batch``) when the predictor has it."""
    if hasattr(predictor, "run_batch"):
        return predictor.run_batch(batch, padding or predictor.default_padding)
    if padding not in (None, "fixed"):
        raise ValueError(f"padding {padding!r}: this predictor runs fixed shapes only")
    return predictor(batch)


def answer(predictor, rows: list, padding: str | None = None, feats=None) -> dict:
    """Per-task output arrays for ``rows`` (texts, or pairs), computed as ONE batch.

    The same featurizer and post-processing as :meth:`Predictor.predict`: classification
    ``label`` is its arg-max, ``probabilities`` the softmax of the same logits. ``feats``:
    ``rows`` already featurized (by :func:`weigh`), so they are not tokenized again.
    """
    from ..tasks import best_spans
    from ..text import QAFeatures
    task = predictor.task
    if feats is None:
        feats = _featurize(predictor, rows)
    if isinstance(feats, QAFeatures):
        out = _raw_outputs(predictor, feats.batch, padding)
        spans = best_spans(out, feats)
        return {"answer": [s["text"] for s in spans], "start_char": [s["start_char"] for s in spans],
                "end_char": [s["end_char"] for s in spans],
                "score": np.array([s["score"] for s in spans], dtype=np.float32),
                "truncated": np.asarray(feats.query_truncated, dtype=bool)}
    out = np.asarray(_raw_outputs(predictor, feats, padding))
    truncated = np.asarray(feats.truncated, dtype=bool)
    if task.kind == "classification":
        z = out.astype(np.float64)
        p = np.exp(z - z.max(-1, keepdims=True))
        return {"label": out.argmax(-1), "probabilities": (p / p.sum(-1, keepdims=True)).astype(np.float32),
                "truncated": truncated}
    if task.kind == "regression":
        return {"score": out[:, 0], "truncated": truncated}
    return {"embedding": out, "truncated": truncated}


class Rows(list):
    """One request's rows and what it weighs in a batch (``cost``: its texts, or with a token
    budget its tokens): ``@serve.batch``'s ``batch_size_fn`` adds these up. ``feats``: the rows
    featurized, when weighing them took that."""
    cost = 0
    tokens = 0
    feats = None


def weigh(predictor, rows: list, by_tokens: bool) -> Rows:
    """``rows`` as :class:`Rows`; with ``by_tokens`` their tokens as the featurizer counts them
    (truncated texts count their kept tokens; QA: every window), and the features kept for the
    batch (:func:`run_batch`), so each text is tokenized once."""
    out = Rows(rows)
    out.cost = len(rows)
    if by_tokens:
        try:
            feats = _featurize(predictor, rows)
        except ValueError as e:
            raise ProtocolError(400, f"{type(e).__name__}: {e}") from None
        batch = feats.batch if hasattr(feats, "batch") else feats
        out.tokens = out.cost = int(np.sum(batch.valid_length))
        out.feats = feats
    return out


def check_token_budget(max_batch_tokens: int | None, seq_length: int | None, padding: str | None) -> None:
    """Refuse a token budget per batch that could never work: below the sequence length (a
    text of that many tokens would never fit) or with ``fixed`` padding (every row then
    computes the full sequence length, whatever its tokens). ``seq_length`` None: unknown yet."""
    if max_batch_tokens is None:
        return
    if seq_length is not None and max_batch_tokens < seq_length:
        raise ValueError(f"max batch tokens (--max-batch-tokens) {max_batch_tokens} is below the sequence length "
                         f"(--seq-length) {seq_length}: a text of that many tokens could never be batched")
    if padding == "fixed":
        raise ValueError("max batch tokens (--max-batch-tokens) counts real tokens, but padding fixed pads every "
                         "row to the sequence length; use longest or packed padding")


def batch_cost(items) -> int:
    return sum(getattr(r, "cost", len(r)) for r in items)


def split(result: dict, counts: list[int]) -> list[dict]:
    """One batch's output arrays cut back into each request's rows."""
    edges = np.cumsum([0] + counts)
    return [{k: v[a:b] for k, v in result.items()} for a, b in zip(edges[:-1], edges[1:])]


def _answer_or_error(predictor, rows, padding):
    try:
        return answer(predictor, rows, padding, getattr(rows, "feats", None))
    except Exception as e:  # noqa: BLE001 - becomes this request's error answer
        return e


def _featurize(predictor, rows: list):
    from ..text import TruncationWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # reported per row as `truncated`
        return predictor.featurize(rows)


def run_batch(predictor, items: list, padding: str | None, last_end: float | None = None,
              full: bool = False) -> list:
    """One formed batch (``items``: each request's rows), answered as ONE batch and cut back
    per request, each with the batch's statistics; if the batch fails, each request is answered
    alone, so that one request's bad rows become its own error answer only.

    ``last_end``: when the replica's previous batch ended (``time.perf_counter``). If this batch
    is ``full`` (it reached the batcher's size limit, so the batcher did not wait for more) and
    a request of it was already waiting then (``rows.arrived``), the time between the two
    batches (``gap_s``) is work the replica did instead of computing -- answering the finished
    requests, reading new ones, forming the batch -- and the server's queue is busy for it too."""
    if not items:
        return []
    t0 = time.perf_counter()
    waiting = full and last_end is not None and \
        min(getattr(rows, "arrived", math.inf) for rows in items) <= last_end
    counts = [len(rows) for rows in items]
    feats = [getattr(rows, "feats", None) for rows in items]
    try:
        from ..text import concat_features
        parts = split(answer(predictor, [r for rows in items for r in rows], padding,
                             None if None in feats else concat_features(feats)), counts)
    except Exception:  # noqa: BLE001 - one request's rows may be at fault: answer each alone
        parts = [_answer_or_error(predictor, rows, padding) for rows in items]
    t1 = time.perf_counter()
    tokens = sum(getattr(r, "tokens", 0) for r in items)
    return [(p, {"service_s": t1 - t0, "start": t0, "end": t1, "gap_s": t0 - last_end if waiting else None,
                 "batch_size": len(items), "batch_rows": sum(counts), "batch_tokens": tokens}) for p in parts]


def build_deployment():
    """The ``BertModel`` deployment class (FastAPI ingress), made on first use so that
    importing :mod:`bertg4.serve` needs neither Ray nor FastAPI."""
    global _DEPLOYMENT
    if _DEPLOYMENT is not None:
        return _DEPLOYMENT
    import ray
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI(title="bertg4", docs_url=None, redoc_url=None, openapi_url=None)

    def error(e: ProtocolError):
        return JSONResponse(e.body(), status_code=e.status)

    @serve.deployment(name="BertModel")
    @serve.ingress(api)
    class BertModel:
        def __init__(self, spec: dict):
            spec = {**DEFAULTS, **spec}
            if spec.get("threads"):
                import torch
                torch.set_num_threads(int(spec["threads"]))
            self.spec, self.name = spec, spec["name"]
            self.limits = Limits(spec["max_texts"], spec["max_chars"], spec["max_body_bytes"])
            if self.limits.max_texts > spec["max_batch_size"]:
                self.limits = dataclasses.replace(self.limits, max_texts=int(spec["max_batch_size"]))
            self.predictor = load_predictor(spec)
            self.padding = spec.get("padding")
            padding = self.padding or getattr(self.predictor, "default_padding", "fixed")  # what batches run
            self.max_batch_tokens = int(spec["max_batch_tokens"]) if spec.get("max_batch_tokens") else None
            check_token_budget(self.max_batch_tokens,
                               int(getattr(self.predictor, "seq_length", 0) or spec["seq_length"]), padding)
            self.max_batch_size = int(spec["max_batch_size"])
            self._batched.set_max_batch_size(self.max_batch_tokens or self.max_batch_size)
            self._batched.set_batch_wait_timeout_s(float(spec["batch_wait_ms"]) / 1e3)
            self._last_end = None  # when the last batch ended (run_batch's gap_s)
            self._batches = 0  # batches run so far: each answer names its batch (x-bertg4-batch)
            self.node = ray.get_runtime_context().get_node_id()
            ctx = serve.get_replica_context()
            self.replica = ctx.replica_id.unique_id
            # the bounded queues this replica runs under, whoever set them (serve, a Serve config)
            self.bounds = _queue_bounds(getattr(ctx, "_deployment_config", None))
            example = ("a warm-up sentence", "another one") if self.predictor.task.pair else "a warm-up sentence"
            if self.predictor.task.kind == "qa":
                example = ("what is warmed up?", "the model is warmed up before serving.")
            answer(self.predictor, [example] * 2, self.padding)  # first call pays one-off costs here
            self.meta = metadata(self.name, self.predictor)
            # the heap built so far (torch, Ray, FastAPI, the model) is out of the collector's
            # view: a full collection stops the event loop, and every request waiting on it; in a
            # process holding the same, one took about 185 ms on a 2-core CPU
            # (results/2026-12-01_cpu_serving_gc/gc_pause.txt)
            self.gc_frozen = freeze_heap() if spec["freeze_gc"] else gc.get_freeze_count()
            self.gc_pauses = GcPauses().install()
            self.meta["parameters"].update({
                "engine": self.predictor.engine, "device_name": self.predictor.device_name(),
                "padding": padding, "allocator": allocator(),
                "float32_matmul": _matmul_label(self.predictor),
                "max_batch_size": int(spec["max_batch_size"]), "batch_wait_ms": float(spec["batch_wait_ms"]),
                "max_batch_tokens": self.max_batch_tokens, "freeze_gc": bool(spec["freeze_gc"]),
                **self.bounds, **ingress(),
                "max_texts": self.limits.max_texts, "max_chars": self.limits.max_chars,
                "max_body_bytes": self.limits.max_body_bytes,
                "spec": {k: spec[k] for k in ("model", "task", "engine", "recipe", "dtype", "device", "seq_length",
                                              "vocab", "config", "seed", "exported_model", "padding", "threads")}})

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, batch_size_fn=batch_cost)
        async def _batched(self, items: list) -> list:
            # on the replica's event loop: handed to a worker thread, on 2 cores the server
            # answered 72-78 requests/s instead of 121-122 with smaller batches (likely the GIL
            # shared by the thread's torch calls and the loop's request handling;
            # results/2026-11-29_cpu_serving_direct_ingress/trials/6_batch_thread)
            # full: at the batcher's limit by texts (with a token budget, when is unknown: no gap then)
            out = run_batch(self.predictor, items, self.padding, self._last_end,
                            full=self.max_batch_tokens is None and batch_cost(items) >= self.max_batch_size)
            if out:
                self._last_end = out[0][1]["end"]
                self._batches += 1
                for _, stats in out:
                    stats["batch"] = self._batches
            return out

        def _known(self, name: str):
            if name != self.name:
                raise ProtocolError(404, f"unknown model {name!r}; this server serves {self.name!r}")

        @api.get("/v2/health/live")
        def live(self):
            return {"live": True}

        @api.get("/v2/health/ready")
        def ready(self):
            return {"ready": True}

        @api.get("/v2")
        def server_metadata(self):
            return {"name": "bertg4", "version": "1", "extensions": []}

        @api.get("/v2/models/{name}")
        def model_metadata(self, name: str):
            try:
                self._known(name)
            except ProtocolError as e:
                return error(e)
            # this replica's collector pauses since it started (the one that answers this request)
            gc_state = {"replica": self.replica, "frozen_objects": self.gc_frozen, **self.gc_pauses.summary()}
            return {**self.meta, "parameters": {**self.meta["parameters"], "gc": gc_state}}

        @api.get("/v2/models/{name}/ready")
        def model_ready(self, name: str):
            try:
                self._known(name)
            except ProtocolError as e:
                return error(e)
            return {"name": name, "ready": True}

        @api.post("/v2/models/{name}/infer")
        async def infer(self, name: str, request: Request):
            try:
                self._known(name)
                check_body_size(request.headers.get("content-length"), self.limits)
                rows, info = parse_infer(await request.body(), self.predictor.task, self.limits)
                rows = weigh(self.predictor, rows, self.max_batch_tokens is not None)
                if self.max_batch_tokens is not None and rows.cost > self.max_batch_tokens:
                    raise ProtocolError(413, f"request of {rows.cost} tokens is larger than the batch budget "
                                        f"of {self.max_batch_tokens} tokens (--max-batch-tokens)")
            except ProtocolError as e:
                return error(e)
            t0 = rows.arrived = time.perf_counter()
            result, stats = await self._batched(rows)
            t1 = time.perf_counter()
            if isinstance(result, Exception):
                status = 400 if isinstance(result, ValueError) else 500
                return JSONResponse({"error": f"{type(result).__name__}: {result}"}, status_code=status)
            headers = {"x-bertg4-batch": str(stats.get("batch", 0)), "x-bertg4-batch-size": str(stats["batch_size"]),
                       "x-bertg4-batch-rows": str(stats["batch_rows"]),
                       "x-bertg4-batch-tokens": str(stats["batch_tokens"]),
                       "x-bertg4-request-tokens": str(rows.tokens),
                       "x-bertg4-service-ms": f"{1e3 * stats['service_s']:.3f}",
                       "x-bertg4-queue-ms": f"{1e3 * (stats['start'] - t0):.3f}",
                       "x-bertg4-replica-ms": f"{1e3 * (t1 - t0):.3f}",
                       # when (time.perf_counter, seconds): entered the batch queue, batch start, batch end, answered
                       "x-bertg4-clock": f"{t0:.6f} {stats['start']:.6f} {stats['end']:.6f} {t1:.6f}",
                       "x-bertg4-node": self.node, "x-bertg4-replica": self.replica}
            if stats["gap_s"] is not None:
                headers["x-bertg4-batch-gap-ms"] = f"{1e3 * stats['gap_s']:.3f}"
            return JSONResponse(response(self.name, self.predictor.task, result, info), headers=headers)

    _DEPLOYMENT = BertModel
    return BertModel


_DEPLOYMENT = None


def deployment_options(replicas: int | None = 1, min_replicas: int | None = None,
                       max_replicas: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
                       max_ongoing_requests: int | None = None, max_queued_requests: int | None = None,
                       max_batch_size: int = 8, resources: dict | None = None,
                       target_ongoing_requests: float | None = None) -> dict:
    """``Deployment.options`` for the replicas: count or autoscaling bounds, CPUs/GPUs per
    replica, and the bounded queues (defaults: 4 x ``max_batch_size`` each). Requests beyond
    ``max_ongoing_requests`` wait in Serve's router, which retries with back-off, so most of
    the queue belongs inside the replica, where each batch takes what has arrived."""
    if (min_replicas is None) != (max_replicas is None):
        raise ValueError("give both --min-replicas and --max-replicas for autoscaling, or --replicas")
    ongoing = max_ongoing_requests or 4 * max_batch_size
    if ongoing < max_batch_size:
        raise ValueError(f"max_ongoing_requests={ongoing} is below max_batch_size={max_batch_size}: "
                         "batches could never fill")
    opts = {"max_ongoing_requests": ongoing,
            "max_queued_requests": max_queued_requests if max_queued_requests is not None else 4 * max_batch_size,
            "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus,
                                  **({"resources": dict(resources)} if resources else {})}}
    if min_replicas is not None:
        if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
            raise ValueError(f"autoscaling needs 0 <= min_replicas <= max_replicas, max >= 1; got "
                             f"{min_replicas}..{max_replicas}")
        opts["autoscaling_config"] = {"min_replicas": min_replicas, "max_replicas": max_replicas,
                                      "target_ongoing_requests": target_ongoing_requests or max_batch_size}
    else:
        if replicas is None or replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas!r}")
        opts["num_replicas"] = replicas
    return opts


def build_app(args: dict, options: dict | None = None):
    """Ray Serve application builder (``import_path: bertg4.serve.app:build_app`` in a Serve
    config; ``args`` is the replica spec: model, task, batching, limits). ``options``:
    :func:`deployment_options` (a Serve config gives them under ``deployments`` instead)."""
    unknown = sorted(set(dict(args or {})) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown application args {unknown}; known: {sorted(DEFAULTS)}")
    spec = {**DEFAULTS, **dict(args or {})}
    dep = build_deployment()
    return (dep.options(**options) if options else dep).bind(spec)
