"""The ``bertg4 serve`` and ``bertg4 loadtest`` subcommands (``add_parser(sub)`` / ``run(args)``).

``python -m bertg4.serve.command serve ...`` and ``... loadtest ...`` do the same as
``bertg4 serve`` / ``bertg4 loadtest``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

from ..argtypes import positive_int as _positive_int, task_name as _task


def _positive_float(text: str) -> float:
    import argparse
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def _float_list(text: str) -> list[float]:
    import argparse
    vals = [_positive_float(x) for x in text.split(",") if x.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return vals


def add_parser(sub):
    """Add ``serve`` and ``loadtest`` to an argparse subparsers object; returns both parsers."""
    from ..recipe import RECIPES
    from .protocol import Limits
    s = sub.add_parser("serve", help="serve a model over HTTP (Open Inference Protocol) with Ray Serve",
                       description="Run a model as a Ray Serve application speaking the Open Inference "
                       "Protocol (KServe v2 REST) with dynamic batching, on a local Ray instance (default) "
                       "or a Ray cluster (--address). Ctrl-C or SIGTERM stops it. --write-config writes a "
                       "Serve config file (as `serve build` does) instead of serving.")
    s.add_argument("--model", default="embedded", help="as in deploy: 'embedded' (default), a Hugging Face "
                   "folder, a GluonNLP .params file, or random:<preset>")
    s.add_argument("--exported-model", help="serve an export directory (bertg4 deploy's output) instead")
    s.add_argument("--task", type=_task, default="SST", help="default SST")
    s.add_argument("--engine", default="pt", choices=["pt", "hf", "mx"])
    s.add_argument("--recipe", default="baseline", choices=list(RECIPES))
    s.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    s.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] (inside each replica)")
    s.add_argument("--seq-length", type=_positive_int, default=128, help="default 128")
    s.add_argument("--config", help="preset name or config.json (some .params files)")
    s.add_argument("--vocab", help="vocab.txt or GluonNLP .vocab file (.params models)")
    s.add_argument("--seed", type=int, default=0, help="seed for random weights and heads")
    s.add_argument("--padding", help="padding mode of each dynamic batch (default: the engine's fastest "
                   "exact mode when it has length-aware execution, else fixed)")
    s.add_argument("--name", default="bert", help="model name in the URLs (default bert)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine "
                   "only; 0.0.0.0 to accept other machines)")
    s.add_argument("--port", type=_positive_int, default=8000, help="default 8000")
    s.add_argument("--address", help="join this Ray cluster (e.g. auto, 10.0.0.5:6379) instead of starting "
                   "a local Ray instance")
    s.add_argument("--num-cpus", type=_positive_int, help="CPUs of the local Ray instance (default: all)")
    s.add_argument("--replicas", type=_positive_int, default=1, help="replicas (default 1)")
    s.add_argument("--min-replicas", type=int, help="autoscaling lower bound (with --max-replicas)")
    s.add_argument("--max-replicas", type=_positive_int, help="autoscaling upper bound")
    s.add_argument("--replica-cpus", type=_positive_float, default=1.0, help="CPUs reserved per replica (default 1)")
    s.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (default 0; 1 with --device cuda)")
    s.add_argument("--threads", type=_positive_int, help="torch threads per replica (default: torch's)")
    s.add_argument("--max-batch-size", type=_positive_int, default=8,
                   help="texts per dynamic batch, and per request (default 8)")
    s.add_argument("--batch-wait-ms", type=float, default=10.0,
                   help="how long a batch waits to fill once it could start (default 10)")
    s.add_argument("--max-batch-tokens", type=_positive_int,
                   help="a token budget per dynamic batch instead of a count of texts: a batch takes requests "
                   "while their tokens fit (at least the sequence length; --max-batch-size then bounds the "
                   "texts of one request)")
    s.add_argument("--max-ongoing-requests", type=_positive_int,
                   help="requests a replica holds at once (default 4 x max batch size)")
    s.add_argument("--max-queued-requests", type=int,
                   help="requests waiting for a replica before the server answers 503 (default 4 x max batch)")
    s.add_argument("--max-texts", type=_positive_int, default=Limits.max_texts,
                   help=f"texts per request, past it 413 (default {Limits.max_texts}, at most the max batch size)")
    s.add_argument("--max-chars", type=_positive_int, default=Limits.max_chars,
                   help=f"characters per text, past it 413 (default {Limits.max_chars})")
    s.add_argument("--max-body-bytes", type=_positive_int, default=Limits.max_body_bytes,
                   help=f"request body bytes, past it 413 (default {Limits.max_body_bytes})")
    s.add_argument("--no-freeze-gc", action="store_true",
                   help="leave the replica's whole heap to Python's garbage collector (by default it is frozen "
                   "once the model is warmed up, so that a full collection does not scan it: about 185 ms on a "
                   "2-core CPU)")
    s.add_argument("--direct-ingress", action="store_true",
                   help="Ray Serve's throughput-optimized mode: each replica also answers on an HTTP server "
                   "of its own (printed at start), which a client can use to skip the proxy's hop")
    s.add_argument("--haproxy", action="store_true",
                   help="Ray Serve's HAProxy ingress in front of the replicas (HAProxy comes with Ray): it answers "
                   "on --port and sends each request to the replica holding the fewest (balance leastconn); "
                   "its stats and metrics ports (8404, 9101) listen on every interface. Not with --direct-ingress; "
                   "with --address the cluster's own setting applies")
    s.add_argument("--ray-metrics", action="store_true",
                   help="keep Ray's metrics collection on in the local Ray instance (off by default: its "
                   "round every 10 s stalls a batch on a machine of few cores); with --address the "
                   "cluster's own setting applies")
    s.add_argument("--write-config", metavar="PATH", help="write a Ray Serve config YAML (serve deploy / "
                   "serve run / KubeRay serveConfigV2) for these settings, and exit")

    t = sub.add_parser("loadtest", help="open-loop Poisson load on a server; records vs the simulator",
                       description="Send Poisson arrivals at given rates to an Open Inference Protocol "
                       "server (127.0.0.1 by default), bounded by request count and duration; write one "
                       "record per rate (sent, ok, rejected, failed, lost, latency percentiles, achieved "
                       "throughput, simulated p50/p99 from the service times measured in the same run), a "
                       "table and a figure. --find-max searches the highest rate meeting --p99-ms.")
    t.add_argument("--url", default="http://127.0.0.1:8000", help="server (default http://127.0.0.1:8000)")
    t.add_argument("--name", default="bert", help="model name (default bert)")
    t.add_argument("--rates", type=_float_list, help="requests/s, comma-separated")
    t.add_argument("--capacity-fractions", type=_float_list,
                   help="rates as fractions of the server's capacity (what it answers per second in a closed "
                   "loop that keeps a full batch waiting, measured first in a short run), e.g. 0.2,0.5,0.8")
    t.add_argument("--capacity-concurrency", type=_positive_int,
                   help="clients of that closed loop (default twice the server's max batch, times the replicas "
                   "its metadata says it runs)")
    t.add_argument("--requests", type=_positive_int, default=300, help="timed requests per rate at most, sent after its warm-up (default 300)")
    t.add_argument("--duration", type=_positive_float, default=30.0, help="seconds per rate at most (default 30)")
    t.add_argument("--timeout", type=_positive_float, default=10.0,
                   help="seconds before an unanswered request counts as lost (default 10)")
    t.add_argument("--warmup", type=float, default=1.0,
                   help="seconds at the start of each rate left out of the latency statistics (default 1)")
    t.add_argument("--texts", default="sst2", help="sst2 (SST-2 dev sentences, default), sample, or a file "
                   "with one text per line")
    t.add_argument("--texts-per-request", type=_positive_int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--timer", default="idle", choices=["idle", "arrival"],
                   help="simulated batch timer: idle (@serve.batch beside the model; default) or arrival "
                   "(bertg4.cost.simulate)")
    t.add_argument("--find-max", action="store_true", help="search the highest rate that meets --p99-ms")
    t.add_argument("--p99-ms", type=_positive_float, help="p99 target (ms) for --find-max; default 5 x the "
                   "single-request latency")
    t.add_argument("--price-per-hour", type=_positive_float, help="$ per hour of the server, to price --find-max")
    t.add_argument("--offline", action="store_true", help="also load the served model in this process and "
                   "time direct calls: the serving overhead at batch 1, the offline throughput and the offline "
                   "time per batch size (up to about 3 s each); with --find-max, the queueing bound: the rate "
                   "an ideal server of those times sustains at the p99 target")
    t.add_argument("--keep-requests", action="store_true",
                   help="also write every request of every level (send time, outcome, latency, its batch and the "
                        "replica's clock) to requests.jsonl.gz in --output")
    t.add_argument("--output", default="loadtest_out", help="folder for records.jsonl, table.md, loadtest.png")
    return s, t


# --- serve --------------------------------------------------------------------------------

def _spec(args) -> dict:
    return {"name": args.name, "model": args.model, "task": args.task, "engine": args.engine,
            "recipe": args.recipe, "dtype": args.dtype, "device": args.device, "seq_length": args.seq_length,
            "vocab": args.vocab, "config": args.config, "seed": args.seed,
            "exported_model": os.path.abspath(args.exported_model) if args.exported_model else None,
            "padding": args.padding, "threads": args.threads, "max_batch_size": args.max_batch_size,
            "batch_wait_ms": args.batch_wait_ms, "max_batch_tokens": args.max_batch_tokens, "max_texts": min(args.max_texts, args.max_batch_size),
            "max_chars": args.max_chars, "max_body_bytes": args.max_body_bytes, "freeze_gc": not args.no_freeze_gc}


def _options(args) -> dict:
    from .app import deployment_options
    auto = args.min_replicas is not None or args.max_replicas is not None
    return deployment_options(None if auto else args.replicas, args.min_replicas, args.max_replicas,
                              args.replica_cpus, args.num_gpus, args.max_ongoing_requests,
                              args.max_queued_requests, args.max_batch_size)


def serve_config(args) -> dict:
    """The Serve config (``serve build`` layout) for these settings."""
    from .server import APP_NAME
    opts = _options(args)
    dep = {"name": "BertModel", **opts}
    return {"proxy_location": "EveryNode",
            "http_options": {"host": args.host, "port": args.port},
            "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "bertg4.serve.app:build_app",
                              "args": {k: v for k, v in _spec(args).items() if v is not None},
                              "deployments": [dep]}]}


def write_config(args, path: str) -> str:
    import yaml
    if os.path.exists(args.model):  # a local checkpoint: the config must not depend on the working folder
        args.model = os.path.abspath(args.model)
    if args.haproxy:  # (before anything is written)
        from .server import check_haproxy
        check_haproxy(args.direct_ingress, None, False)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Ray Serve config for bertg4 (written by `bertg4 serve --write-config`).\n"
                f"# Run: serve run {path}   (or serve deploy; KubeRay: serveConfigV2)\n")
        from .server import DIRECT_INGRESS_ENV, HAPROXY_ENV
        for asked, what, env in ((args.direct_ingress, "Direct ingress", DIRECT_INGRESS_ENV),
                                 (args.haproxy, "HAProxy ingress", HAPROXY_ENV)):
            if asked:
                f.write(f"# {what}: start every Ray node with " + " ".join(f"{k}={v}" for k, v in env.items()) +
                        " in its environment\n# (a Serve config cannot switch it on).\n")
        yaml.safe_dump(serve_config(args), f, sort_keys=False)
    return path


def _serve(args) -> int:
    if args.padding:
        from ..padding import check_padding
        check_padding(args.padding)  # a clear error here rather than a failed replica
    from .app import check_token_budget  # here for a clear error before Ray starts; the replica checks again
    check_token_budget(args.max_batch_tokens, None if args.exported_model else args.seq_length, args.padding)
    if args.write_config:
        print(f"written: {write_config(args, args.write_config)}")
        return 0
    if args.device.startswith("cuda") and args.num_gpus == 0:
        args.num_gpus = 1.0
    from .server import start
    auto = args.min_replicas is not None or args.max_replicas is not None
    print(f"starting {'Ray cluster connection' if args.address else 'a local Ray instance'} and Serve ...",
          flush=True)

    def stop_on_signal(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    srv = None
    try:
        srv = start(_spec(args), host=args.host, port=args.port, address=args.address, num_cpus=args.num_cpus,
                    replicas=None if auto else args.replicas, min_replicas=args.min_replicas,
                    max_replicas=args.max_replicas, replica_cpus=args.replica_cpus, num_gpus=args.num_gpus,
                    max_ongoing_requests=args.max_ongoing_requests,
                    max_queued_requests=args.max_queued_requests, direct_ingress=args.direct_ingress,
                    ray_metrics=args.ray_metrics, haproxy=args.haproxy)
        signal.signal(signal.SIGTERM, stop_on_signal)  # again: starting Ray installs its own handler
        print(srv.describe(), flush=True)
        print("Ctrl-C or SIGTERM stops the server.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if srv is not None:
            srv.stop()
            print("stopped: Serve shut down" + (" and the local Ray instance with it" if srv.started_ray else ""),
                  flush=True)
    return 0


# --- loadtest ------------------------------------------------------------------------------

def offline_timings(info: dict, texts: list[str], max_batch: int, iters: int = 20,
                    curve_seconds: float = 3.0) -> dict:
    """The served model loaded here, with a replica's threads: direct ``predict`` of one text
    (the serving overhead is the single-request latency minus this), the offline throughput of
    ``infer`` at ``max_batch`` over the same texts with the server's padding, fixed-shape
    timed batches of ``max_batch`` (``bench.measure``), and the offline service curve: for
    each batch size 1..``max_batch``, the mean time of the call a replica makes for one batch
    (:func:`bertg4.serve.app.answer`: featurize, run, post-process), at most ``iters`` calls or
    ``curve_seconds`` per size (at least 3), each on the consecutive texts :func:`curve_rows`
    picks, so that every size sees lengths from the whole set, however few its calls."""
    import numpy as np
    from ..bench import measure
    from .app import DEFAULTS, answer, load_predictor
    spec = {**DEFAULTS, **info["spec"]}
    if spec.get("threads"):  # as many threads as one replica has
        import torch
        torch.set_num_threads(int(spec["threads"]))
    pred = load_predictor(spec)
    padding = spec.get("padding")
    kw = {"padding": padding} if padding else {}
    batch = pred.featurize(texts[:256])
    pred.infer(batch[:2 * max_batch], batch_size=max_batch, **kw)  # warm-up
    t = []
    for k in range(iters):
        t0 = time.perf_counter()
        pred.predict([texts[k % len(texts)]], batch_size=1, **kw)
        t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(2):
        pred.infer(batch, batch_size=max_batch, **kw)  # the server's padding, SST-2 lengths
    bulk = 2 * len(batch) / (time.perf_counter() - t0)
    fixed = measure(pred, batch, max_batch, warmup=2, iters=iters)
    curve = {}
    for b in range(1, max_batch + 1):
        spent = []
        while len(spent) < 3 or (len(spent) < iters and sum(spent) < curve_seconds):
            part = curve_rows(texts, b, len(spent))
            t0 = time.perf_counter()
            answer(pred, part, padding)
            spent.append(time.perf_counter() - t0)
        curve[str(b)] = 1e3 * float(np.mean(spent))
    return {"direct_predict_ms_p50": 1e3 * float(np.median(t)), "offline_per_s_max_batch": bulk,
            "offline_fixed_ms_max_batch": fixed["latency_ms_p50"], "offline_fixed_per_s_max_batch":
            fixed["sequences_per_s"], "offline_threads": spec.get("threads"), "offline_service_ms_curve": curve}


def curve_rows(texts: list, size: int, call: int) -> list:
    """The ``size`` consecutive texts (wrapping around) of the offline curve's ``call``-th batch:
    they start at the golden-ratio sequence's ``call``-th point of the set, so that any number
    of calls spreads its starts over the whole set."""
    start = int(((call * 0.6180339887498949) % 1.0) * len(texts))
    return [texts[(start + j) % len(texts)] for j in range(size)]


def queueing_bound(curve_ms: dict, p99_target_ms: float, max_batch: int, batch_wait_ms: float,
                   overhead_ms: float, timer: str = "idle", seed: int = 0) -> float:
    """Requests/s an ideal server of this model and batching would sustain at the p99 target:
    the simulated dynamic-batching queue (:func:`bertg4.serve.simulate.max_rate`, one seeded
    simulation) with the offline service curve (``curve_ms``: mean ms per batch size), the
    batcher's wait, each request's latency raised by ``overhead_ms`` (the path outside the
    replica: HTTP, routing, serialisation; it costs the server no time), and no work between
    batches. What it leaves below the curve's own capacity comes from the queue (Poisson
    arrivals and batches whose time grows with their size), within the search's limits: at
    most 98 % of that capacity, 1 % apart. 0 when no rate meets the target."""
    from . import simulate as S
    if not (overhead_ms >= 0 and math.isfinite(overhead_ms)):
        raise ValueError(f"serving overhead must be ms >= 0, got {overhead_ms!r}")
    return S.max_rate(S.curve_from_ms(curve_ms), p99_target_ms / 1e3, int(max_batch), batch_wait_ms / 1e3,
                      [overhead_ms / 1e3] if overhead_ms else None, seed=seed, timer=timer)


def _loadtest(args) -> int:
    from .. import system
    from ..cost import cost_per_million
    from . import loadtest as L
    url = args.url.rstrip("/")
    from urllib.parse import urlparse
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: sending load to {host}, not this machine", file=sys.stderr)
    texts = L.traffic(args.texts)
    info = L.server_info(url, args.name)
    infer = f"{url}/v2/models/{args.name}/infer"
    bodies = L.bodies_for(info, texts, args.texts_per_request)
    extra = {"command": system.command_line(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "versions": system.versions(), "url": url}
    single = L.sequential_latency(infer, bodies, n=20, timeout_s=args.timeout)
    print(f"single request: p50 {single['single_ms_p50']:.1f} ms, p99 {single['single_ms_p99']:.1f} ms")
    summary = {"kind": "summary", **{k: info.get(k) for k in ("task", "model", "engine", "recipe", "dtype",
                                                               "device_name", "seq_length", "padding",
                                                               "max_batch_size", "batch_wait_ms", "max_batch_tokens")}, **single}
    records = []
    if args.offline:
        off = offline_timings(info, texts, int(info["max_batch_size"]))
        summary.update(off)
        summary["serving_overhead_ms_batch1"] = single["single_ms_p50"] - off["direct_predict_ms_p50"]
        print(f"direct predict of one text: {off['direct_predict_ms_p50']:.1f} ms -> serving overhead "
              f"{summary['serving_overhead_ms_batch1']:.1f} ms; offline throughput at batch "
              f"{info['max_batch_size']}: {off['offline_per_s_max_batch']:.1f}/s")
    kw = dict(n_requests=args.requests, duration_s=args.duration, timeout_s=args.timeout, warmup_s=args.warmup,
              texts_per_request=args.texts_per_request, timer=args.timer, log=print, keep_requests=args.keep_requests)
    rates = list(args.rates or [])
    if args.capacity_fractions:
        cap = L.measure_capacity(url, args.name, texts, args.requests, min(args.duration, 10.0), args.timeout,
                                 seed=args.seed + 100, warmup_s=min(args.warmup, 0.5 * min(args.duration, 10.0)),
                                 concurrency=args.capacity_concurrency, log=print, keep_requests=args.keep_requests)
        summary["capacity_per_s"] = cap["capacity_per_s"]
        summary["capacity_service_per_s"] = cap.get("capacity_service_per_s")
        alone = cap.get("capacity_service_per_s")
        print(f"capacity: {cap['capacity_per_s']:.1f} requests/s ({cap['capacity_source']}; " +
              (f"the batches' service times inside the replica alone would allow {alone:.1f}/s)" if alone else
               f"{cap.get('simulated_note') or 'the answers said nothing of their batches'})"))
        records.append(cap)
        rates += [f * cap["capacity_per_s"] for f in args.capacity_fractions]
    if rates:
        records += L.sweep(url, args.name, rates, texts, seed=args.seed, **kw)
    if args.find_max:
        target = args.p99_ms or 5 * single["single_ms_p50"]
        fm = L.find_max(url, args.name, target, texts, n_requests=args.requests, duration_s=args.duration,
                        timeout_s=args.timeout, warmup_s=args.warmup, seed=args.seed + 200, timer=args.timer,
                        log=print, keep_requests=args.keep_requests,
                        # the levels so far bracket the search (find_max sends one text a request)
                        levels=records if args.texts_per_request == 1 else None,
                        capacity_per_s=summary.get("capacity_per_s"))
        summary["find_max_start"] = fm["start"]
        for r in fm["records"]:
            r["kind"] = "find_max"
        records += fm["records"]
        # the best level of the whole run: a capacity-fraction level that met the target counts too
        met = [r for r in records if r.get("kind") in ("loadtest", "find_max") and L.meets_target(r, target)]
        best = max(met, key=lambda r: r["achieved_per_s"], default=None)
        summary.update({"p99_target_ms": target, "max_rate_kind": best["kind"] if best else None,
                        "max_rate_per_s": best["achieved_per_s"] if best else 0.0,
                        "max_rate_p99_ms": best["latency_ms_p99"] if best else None})
        if best and args.price_per_hour:
            summary["price_per_hour"] = args.price_per_hour
            summary["dollars_per_million"] = cost_per_million(args.price_per_hour, best["achieved_per_s"])
        replicas = L.serving_replicas(records)
        if best and "offline_per_s_max_batch" in summary and replicas <= 1:
            summary["throughput_vs_offline"] = best["achieved_per_s"] / summary["offline_per_s_max_batch"]
        elif best and "offline_per_s_max_batch" in summary:  # --offline times one replica's process
            summary["throughput_vs_offline"] = None
            print(f"served vs offline: not computed ({replicas} replicas served; --offline timed one "
                  "replica's process)")
        print(f"highest rate meeting p99 <= {target:.1f} ms: {summary['max_rate_per_s']:.2f}/s"
              + (f", ${summary['dollars_per_million']:.3f} per 1M requests at ${args.price_per_hour}/hour"
                 if summary.get("dollars_per_million") else ""))
        if "offline_service_ms_curve" in summary:
            _bound(summary, info, target, args.timer, records, args.texts_per_request)
    if not records:
        raise ValueError("give --rates, --capacity-fractions or --find-max")
    rows = [{**r, **extra} for r in records] + [{**summary, **extra}]
    paths = write_outputs(rows, args.output)
    print(L.format_table([r for r in rows if r["kind"] != "summary"]))
    print("written: " + ", ".join(paths))
    return 0


def path_overhead(records: list[dict]) -> tuple[float, float] | None:
    """``(ms, rate)``: the path outside the replica (``overhead_ms_p50``, at least 0) at the
    lowest rate of the load levels that measured it (capacity runs left out), where the queue
    adds least; None when none did. The queueing bound's overhead."""
    from .loadtest import CAPACITY
    levels = [r for r in records if r.get("overhead_ms_p50") is not None and r.get("kind") != CAPACITY]
    if not levels:
        return None
    low = min(levels, key=lambda r: r["rate_per_s"])
    return max(0.0, float(low["overhead_ms_p50"])), low["rate_per_s"]


def _bound(summary: dict, info: dict, target_ms: float, timer: str, records: list[dict],
           texts_per_request: int = 1) -> None:
    """The summary's queueing bound at the p99 target (:func:`queueing_bound`), beside what the
    server achieved. Its overhead is the path outside the replica (``overhead_ms_p50``) at the
    run's lowest measured rate, where the queue adds least; not the single-request latency over a
    direct ``predict``, which also holds the batcher's wait (simulated already) and the
    replica's own time. Not computed with a token budget or several texts per request (the
    offline curve counts texts, the simulated queue requests)."""
    from . import simulate as S
    from .loadtest import serving_replicas
    replicas = serving_replicas(records)
    why = ("the server batches by a token budget" if info.get("max_batch_tokens") else
           f"{texts_per_request} texts per request" if texts_per_request != 1 else
           f"{replicas} replicas served; the offline curve is one replica's process" if replicas > 1 else None)
    path = path_overhead(records)
    if why is None and path is None:
        why = "no load level measured the path outside the replica"
    if why is not None:
        summary["queueing_bound_per_s"] = None
        print(f"queueing bound: not computed ({why})")
        return
    overhead, at_rate = path
    curve, B = summary["offline_service_ms_curve"], int(info["max_batch_size"])
    bound = queueing_bound(curve, target_ms, B, float(info["batch_wait_ms"]), overhead, timer)
    full = S.capacity(S.curve_from_ms(curve), B)  # full batches back to back
    summary.update(queueing_bound_per_s=bound, queueing_bound_overhead_ms=overhead,
                   queueing_bound_overhead_rate_per_s=at_rate, queueing_bound_timer=timer,
                   offline_curve_capacity_per_s=full, queueing_bound_vs_curve_capacity=bound / full,
                   queueing_bound_vs_offline=bound / summary["offline_per_s_max_batch"],
                   served_vs_queueing_bound=summary["max_rate_per_s"] / bound if bound > 0 else None)
    print(f"queueing bound at p99 <= {target_ms:.1f} ms: {bound:.2f}/s, {bound / full:.0%} of the offline "
          f"curve's full batches ({full:.1f}/s) and {summary['queueing_bound_vs_offline']:.0%} of the offline "
          f"throughput (an ideal server: the offline curve, {overhead:.1f} ms outside the replica per request "
          f"as measured at {at_rate:.1f}/s, no work between batches); this server: "
          + (f"{summary['served_vs_queueing_bound']:.0%} of it" if bound > 0 else "—"))


def write_outputs(rows: list[dict], out_dir: str) -> list[str]:
    """records.jsonl, table.md and loadtest.png (measured and simulated percentiles vs rate, of
    the ``--rates`` / ``--capacity-fractions`` runs when there are any); with the runs' requests
    in the rows (``--keep-requests``), requests.jsonl.gz too: one line per request, with its
    level's ``level`` (its record's place in records.jsonl), ``kind`` and ``rate_per_s``."""
    import gzip
    from ..bench import write_jsonl
    from . import loadtest as L
    os.makedirs(out_dir, exist_ok=True)
    traces = [(k, r, r.pop("requests")) for k, r in enumerate(rows) if "requests" in r]
    paths = [write_jsonl(rows, os.path.join(out_dir, "records.jsonl"))]
    if traces:
        path = os.path.join(out_dir, "requests.jsonl.gz")
        with gzip.open(path, "wt", encoding="utf-8") as f:
            for k, r, reqs in traces:
                for q in reqs:
                    f.write(json.dumps({"level": k, "kind": r["kind"], "rate_per_s": r["rate_per_s"], **q}) + "\n")
        paths.append(path)
    loads = [r for r in rows if r["kind"] != "summary"]
    summary = next((r for r in rows if r["kind"] == "summary"), {})
    md = os.path.join(out_dir, "table.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write(L.format_table(loads) + "\n\n" + "\n".join(
            f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
            for k, v in summary.items() if k not in ("versions", "kind")) + "\n")
    paths.append(md)
    if any(r.get("p99_ms_simulated") for r in loads):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        sweep = [r for r in loads if r["kind"] == "loadtest"]
        fig = L.plot(sweep or loads)
        png = os.path.join(out_dir, "loadtest.png")
        fig.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(png)
    return paths


_RUN = {"serve": _serve, "loadtest": _loadtest}


def run(args) -> int:
    """``bertg4 serve`` / ``bertg4 loadtest``."""
    return _RUN[args.command](args)


def main(argv=None) -> int:
    """``python -m bertg4.serve.command serve|loadtest [flags]``."""
    import argparse
    parser = argparse.ArgumentParser(prog="bertg4")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as e:
        print(f"bertg4 {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
