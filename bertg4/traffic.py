"""Real traffic: request-length distributions, and throughput measured on them.

Fixed shapes (every row padded to ``seq_length``) are what the article's figures time; the
work users send is short. A *traffic source* is a list of requests with the lengths they
really have:

* ``sst2-dev`` -- the 872 GLUE SST-2 dev sentences (23 WordPiece tokens on average);
* ``squad-small`` -- the questions of ``data/squad_small``'s dev set, as SQuAD windows
  (question + passage, doc stride 128): the QA task's traffic;
* ``lognormal:MEAN,P99[,N]`` -- ``N`` (default 1000) synthetic sentences whose token
  counts (with ``[CLS]`` and ``[SEP]``) follow a log-normal distribution with that mean and
  99th percentile, built from whole-word vocabulary entries (one token each), seeded.

:func:`measure_traffic` times a predictor on a whole source in a padding mode
(:mod:`bertg4.padding`): ``predictor.infer(batch, batch_size, padding=mode)`` over every
row, warm-up passes excluded, the median of ``repeats`` passes reported with their
spread, and the padding waste (computed tokens / real tokens) the pass had.
:func:`bertg4.bench.measure_points` calls it for ``bertg4 bench --traffic``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import data as D
from .padding import padding_waste
from .text import Batch, QAFeatures, check_batch_size

SOURCES = ("sst2-dev", "squad-small", "lognormal:MEAN,P99[,N]")
Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass
class Traffic:
    """Requests of one source: ``texts`` (sentences, or (question, context) pairs for QA)."""
    name: str
    texts: list
    source: str
    kind: str  # "sentences" or "qa"
    lengths: np.ndarray | None = None  # token counts asked for (synthetic sources)


def check_traffic(name) -> str:
    """``name`` if it names a traffic source; a ``ValueError`` naming it and the choices otherwise."""
    if isinstance(name, str) and (name in ("sst2-dev", "squad-small") or name.startswith("lognormal:")):
        if name.startswith("lognormal:"):
            lognormal_params(name)
        return name
    raise ValueError(f"unknown traffic {name!r}: choose one of {', '.join(SOURCES)}")


def lognormal_params(name: str) -> tuple[float, float, int, float, float]:
    """``(mean, p99, n, mu, sigma)`` of ``lognormal:MEAN,P99[,N]``."""
    spec = name.split(":", 1)[1]
    try:
        parts = [float(x) for x in spec.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise ValueError(f"traffic {name!r}: expected lognormal:MEAN,P99[,N] (token counts), e.g. "
                         "lognormal:23,46 or lognormal:23,46,872")
    mean, p99 = parts[:2]
    n = parts[2] if len(parts) == 3 else 1000
    if not (mean >= 3 and p99 > mean) or n < 1 or n != int(n):
        raise ValueError(f"traffic {name!r}: need MEAN >= 3 tokens, P99 > MEAN and a whole N >= 1")
    # mean = exp(mu + s^2/2), p99 = exp(mu + z s): s^2/2 - z s + ln(p99/mean) = 0, smaller root
    gap = math.log(p99 / mean)
    disc = Z99 ** 2 - 2 * gap
    if disc < 0:
        raise ValueError(f"traffic {name!r}: no log-normal has mean {mean:g} and p99 {p99:g} "
                         f"(P99/MEAN must be at most {math.exp(Z99 ** 2 / 2):.1f})")
    sigma = Z99 - math.sqrt(disc)
    mu = math.log(mean) - sigma ** 2 / 2
    return mean, p99, int(n), mu, sigma


def _word_list(tokenizer) -> list[str]:
    """Vocabulary entries that are whole lowercase words: each is one token, alone or in a
    sentence of them."""
    vocab = tokenizer._tok.get_vocab()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) > 1)
    if len(words) < 100:
        raise ValueError("the vocabulary has too few whole-word entries to build synthetic traffic")
    return words


def lognormal_traffic(name: str, tokenizer, seed: int = 0) -> Traffic:
    """Synthetic sentences whose token counts (``[CLS]`` + words + ``[SEP]``) are log-normal."""
    mean, p99, n, mu, sigma = lognormal_params(name)
    if tokenizer is None:
        raise ValueError(f"traffic {name!r} builds sentences from the vocabulary; this model has none")
    rng = np.random.default_rng(seed)
    lengths = np.maximum(3, np.rint(rng.lognormal(mu, sigma, size=n))).astype(np.int64)
    words = _word_list(tokenizer)
    picks = rng.integers(0, len(words), size=int(lengths.sum()))
    texts, at = [], 0
    for length in lengths:
        k = int(length) - 2
        texts.append(" ".join(words[i] for i in picks[at:at + k]))
        at += k
    return Traffic(name, texts, f"synthetic log-normal token counts (mean {mean:g}, p99 {p99:g}, "
                   f"{n} sentences, seed {seed})", "sentences", lengths)


def load_traffic(name: str, tokenizer=None, seed: int = 0, max_rows: int | None = None) -> Traffic:
    """The requests of traffic source ``name`` (see :data:`SOURCES`); ``max_rows``: only the
    first that many requests (records carry the number of rows measured)."""
    name = check_traffic(name)
    if name == "sst2-dev":
        ts = D.load_sst2("dev")
        t = Traffic(name, list(ts.first), ts.source, "sentences")
    elif name == "squad-small":
        qa = D.squad_small("dev")
        t = Traffic(name, list(zip(qa.questions, qa.contexts)), qa.source, "qa")
    else:
        t = lognormal_traffic(name, tokenizer, seed)
    if max_rows is not None:
        if int(max_rows) < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        t.texts = t.texts[:int(max_rows)]
        if t.lengths is not None:
            t.lengths = t.lengths[:int(max_rows)]
    return t


def traffic_batch(predictor, traffic: Traffic) -> Batch:
    """The source's requests featurized for ``predictor`` (QA: every doc-stride window)."""
    qa = predictor.task.kind == "qa"
    if qa != (traffic.kind == "qa"):
        raise ValueError(f"traffic {traffic.name!r} holds {traffic.kind}; task {predictor.task.name} "
                         f"needs {'squad-small' if qa else 'sentences (sst2-dev or lognormal:...)'}")
    if predictor.task.pair:
        raise ValueError(f"task {predictor.task.name} takes sentence pairs; traffic sources hold "
                         "single sentences or QA windows")
    feats = predictor.featurize(traffic.texts)
    return feats.batch if isinstance(feats, QAFeatures) else feats


def length_stats(batch: Batch) -> dict:
    """Token counts of a featurized source: mean, median, p99, max, and how many were truncated."""
    v = batch.valid_length
    return {"tokens_mean": float(v.mean()), "tokens_p50": float(np.percentile(v, 50)),
            "tokens_p99": float(np.percentile(v, 99)), "tokens_max": int(v.max()),
            "truncated_rows": int(np.asarray(batch.truncated).sum())}


def measure_traffic(predictor, batch: Batch, batch_size: int, padding: str | None = None,
                    warmup: int = 1, repeats: int = 3, max_seconds: float | None = None) -> dict:
    """Whole-set throughput of ``predictor.infer(batch, batch_size, padding=padding)``.

    ``warmup`` untimed passes over every row, then ``repeats`` timed passes (``max_seconds``
    stops early once one has run); ``infer`` returns host arrays, so each pass ends when the
    device is done. Reports the median pass: sentences/s, tokens/s (real tokens), the padding
    waste of the pass (computed tokens / real tokens, from ``predictor.last_infer_stats``),
    the repeats' spread, and the mean time per batch.
    """
    check_batch_size(batch_size)
    if not len(batch):
        raise ValueError("traffic has no rows")
    padding = predictor.default_padding if padding is None else padding
    times = time_passes(lambda: predictor.infer(batch, batch_size, padding=padding), warmup, repeats,
                        max_seconds)
    stats = dict(predictor.last_infer_stats)
    return traffic_timing(times, batch, batch_size, stats["padding"], stats["computed_tokens"], warmup)


def time_passes(run, warmup: int = 1, repeats: int = 3, max_seconds: float | None = None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``run()`` (a whole pass over the traffic) after
    ``warmup`` untimed calls; ``max_seconds`` stops early once one timed call has run. The one
    loop every real-traffic timing (bertg4's engines and the peers) goes through."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        run()
    times, started = [], time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    return times


def traffic_timing(times: list[float], batch: Batch, batch_size: int, padding: str,
                   computed_tokens: int, warmup: int) -> dict:
    """The timing fields of a real-traffic record from the passes' seconds (median reported)."""
    seconds = float(np.median(times))
    rows, real = len(batch), int(batch.valid_length.sum())
    n_batches = -(-rows // batch_size)
    return {
        "batch_size": batch_size, "seq_length": batch.seq_len, "padding": padding,
        "rows": rows, "real_tokens": real, "computed_tokens": int(computed_tokens),
        "padding_waste": padding_waste(batch.valid_length, computed_tokens), "warmup": warmup,
        "repeats": len(times), "seconds_median": seconds, "seconds_min": float(min(times)),
        "seconds_max": float(max(times)), "spread": float(max(times) / min(times) - 1.0),
        "sentences_per_s": rows / seconds, "sequences_per_s": rows / seconds,
        "tokens_per_s": real / seconds, "latency_ms_mean": 1e3 * seconds / n_batches,
        "batches": n_batches, **length_stats(batch),
    }


def _run_engine(engine, recipes, tasks, traffics, paddings, batch_sizes, model, device, seq_length,
                warmup, repeats, max_seconds, vocab, max_rows=None, log=print) -> list[dict]:
    """One engine's records on every (recipe, task, traffic, padding, batch size)."""
    from .api import load
    from .bench import measure_points
    from .checkpoint import load_checkpoint
    from .mx.compat import MXNetUnavailable
    from .ort import ORTUnavailable
    from .recipe import NotApplicable, get_recipe
    ckpt = load_checkpoint(model, vocab=vocab)
    records = []
    for recipe in recipes:
        for task in tasks:
            head = {"engine": engine, "recipe": get_recipe(recipe).name, "task": task, "device": device,
                    "traffic": ", ".join(traffics)}
            try:
                p = load(task=task, engine=engine, recipe=recipe, device=device, seq_length=seq_length,
                         checkpoint=ckpt)
            except NotApplicable as e:
                records.append({**head, "status": "not applicable", "reason": str(e)})
                log(f"  {engine} {recipe} {task}: not applicable: {e}")
                continue
            except (MXNetUnavailable, ORTUnavailable) as e:
                records.append({**head, "status": "not available", "reason": str(e)})
                log(f"  {engine}: not available: {e}")
                return records
            for name in traffics:
                traffic = load_traffic(name, p.tokenizer, max_rows=max_rows)
                batch = traffic_batch(p, traffic)
                for mode in paddings or [None]:
                    records += measure_points(p, batch, batch_sizes, warmup=warmup, repeats=repeats,
                                              max_seconds=max_seconds, traffic=name, padding=mode,
                                              log=log, data=traffic.source)
            del p
    return records


def run_traffic(engines, recipes, tasks, traffics, paddings, batch_sizes, model: str = "embedded",
                device: str = "cpu", seq_length: int = 128, warmup: int = 1, repeats: int = 3,
                max_seconds: float | None = None, vocab: str | None = None, peers: bool = False,
                max_rows: int | None = None, log=print, isolate: bool | None = None) -> list[dict]:
    """Every engine (and, with ``peers``, every peer of :mod:`bertg4.peers`) on every traffic
    source, padding mode (``None`` in ``paddings``: the engine's default) and batch size.

    ``isolate`` (default: more than one engine, or peers) runs each engine, and the peers, in
    a fresh process one after the other (:func:`bertg4.bench.in_fresh_process`): thread pools
    of one framework slow down the next one measured in the same process.
    """
    from .bench import in_fresh_process
    from .padding import check_padding
    from .tasks import get_task
    traffics = [check_traffic(t) for t in traffics]
    paddings = [None if m is None else check_padding(m) for m in (paddings or [None])]
    tasks = [get_task(t).name for t in tasks]
    args = (recipes, tasks, traffics, paddings, batch_sizes, model, device, seq_length, warmup,
            repeats, max_seconds, vocab, max_rows)
    jobs = list(engines) + (["peers"] if peers else [])
    if isolate is None:
        isolate = len(jobs) > 1
    records = []
    for job in jobs:
        if job == "peers":
            from .peers import run_peers
            for task in tasks:
                for name in traffics:
                    kw = dict(device=device, seq_length=seq_length, warmup=warmup, repeats=repeats,
                              max_seconds=max_seconds, vocab=vocab, max_rows=max_rows)
                    if isolate:
                        log(f"peers on {name} ({task}): measured in their own process")
                        records += in_fresh_process(run_peers, model, task, name, batch_sizes, **kw)
                    else:
                        records += run_peers(model, task, name, batch_sizes, log=log, **kw)
        elif isolate:
            log(f"engine {job}: measured in its own process")
            records += in_fresh_process(_run_engine, job, *args)
        else:
            records += _run_engine(job, *args, log=log)
    return records


PEER_ORDER = ("hf-longest", "ort-longest", "ort-int8-longest", "sentence-transformers")


def format_traffic(records: list[dict]) -> str:
    """One Markdown table per (task, traffic, batch size): sentences/s, tokens/s, padding waste
    and spread of every engine/recipe/padding and peer, and each one's speed as a ratio to every
    peer measured in the same run (``1.50×``: 1.5 times the peer's sentences/s)."""
    ok = [r for r in records if r.get("traffic") and r.get("status") == "ok"]
    parts = []
    for key in dict.fromkeys((r["task"], r["traffic"], r["batch_size"]) for r in ok):
        rows = [r for r in ok if (r["task"], r["traffic"], r["batch_size"]) == key]
        peers = sorted({r["engine"] for r in rows if r.get("peer")}, key=lambda e: (
            PEER_ORDER.index(e) if e in PEER_ORDER else len(PEER_ORDER), e))
        peer_rate = {e: next(r["sentences_per_s"] for r in rows if r["engine"] == e) for e in peers}
        r0 = rows[0]
        head = "| engine | recipe | padding | sentences/s | tokens/s | padding waste | spread | " + \
            "".join(f"× {e} | " for e in peers)
        lines = [f"**{key[0]} on {key[1]}, batch {key[2]}** — {r0.get('model')}, {r0.get('rows')} rows "
                 f"({r0.get('tokens_mean', 0):.1f} tokens on average, p99 {r0.get('tokens_p99', 0):.0f}, "
                 f"seq {r0.get('seq_length')}) on {r0.get('device_name')}", "",
                 head, "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(peers)]
        for r in rows:
            cells = [r["engine"], r["recipe"], str(r.get("padding")), f"{r['sentences_per_s']:.1f}",
                     f"{r['tokens_per_s']:.0f}", f"{r['padding_waste']:.2f}", f"{100 * r['spread']:.0f} %"]
            cells += [f"{r['sentences_per_s'] / peer_rate[e]:.2f}×" for e in peers]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    other = [r for r in records if r.get("traffic") is not None or r.get("peer")]
    other = [r for r in other if r.get("status") != "ok"]
    if other:
        seen = dict.fromkeys((r.get("engine"), r.get("recipe"), r.get("task"), r.get("padding"),
                              r.get("status"), r.get("reason", "")) for r in other)
        parts.append("Did not run:\n\n" + "\n".join(f"- {e} {rc} {t} {p or ''}: {s} — {why}"
                                                      for e, rc, t, p, s, why in seen))
    return "\n\n".join(parts) if parts else "no real-traffic records"


def precision(r: dict) -> str:
    """``int8`` for INT8 rows (a recipe or a peer), else the record's dtype."""
    return "int8" if "int8" in str(r.get("recipe")) or "int8" in str(r.get("engine")) else str(r.get("dtype"))


def traffic_ratios(records: list[dict]) -> list[dict]:
    """bertg4's fastest row against every peer of the same (task, traffic, batch size) and
    precision (INT8 against INT8, float32 against float32):
    ``ratio`` of median sentences/s, bounded by the passes' spread (``low``: bertg4's slowest
    pass over the peer's fastest; ``high``: the other way round). ``verdict`` is "faster" or
    "slower" only when the whole band is on that side of 1, else "within the spread"."""
    ok = [r for r in records if r.get("traffic") and r.get("status") == "ok"]
    out = []
    for key in dict.fromkeys((r["task"], r["traffic"], r["batch_size"], precision(r)) for r in ok):
        rows = [r for r in ok if (r["task"], r["traffic"], r["batch_size"], precision(r)) == key]
        mine = [r for r in rows if not r.get("peer")]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["sentences_per_s"])
        for peer in (r for r in rows if r.get("peer")):
            low = peer["seconds_min"] / best["seconds_max"]
            high = peer["seconds_max"] / best["seconds_min"]
            out.append({"task": key[0], "traffic": key[1], "batch_size": key[2], "precision": key[3],
                        "engine": best["engine"],
                        "recipe": best["recipe"], "padding": best["padding"], "peer": peer["engine"],
                        "peer_padding": peer["padding"], "ratio": best["sentences_per_s"] / peer["sentences_per_s"],
                        "low": low, "high": high,
                        "verdict": "faster" if low > 1 else "slower" if high < 1 else "within the spread"})
    return out


__all__ = ["run_traffic", "format_traffic", "traffic_ratios", "precision", "SOURCES", "Traffic", "check_traffic", "lognormal_params",
           "lognormal_traffic", "load_traffic", "traffic_batch", "length_stats", "measure_traffic"]
