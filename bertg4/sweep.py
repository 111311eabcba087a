"""Benchmark sweeps: engines x recipes x tasks x sequence lengths x batch sizes, resumable.

Every point is one record, appended to a JSONL file as soon as it is measured, so an
interrupted sweep loses at most the point it was on; run the same command again and the
points already in the file are skipped. Points that cannot run (a recipe the device cannot
honour, out of memory) are recorded with that status and the sweep goes on.

**Rounds** (``bertg4 bench --rounds N``): every point is measured ``N`` times, the engines in
their own processes taking turns in A B, B A, A B ... order, so that two engines compared
were measured next to each other in time each round. A shared VM's speed drifts by more
than the difference between two close engines over the minutes one engine's sweep takes;
:func:`format_comparison` gives the median over rounds of each round's own ratio (and its
range), which that drift cancels from.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import data as D
from .bench import in_fresh_process, measure_points
from .mx.compat import MXNetUnavailable
from .ort import ORTUnavailable
from .recipe import NotApplicable, get_recipe
from .tasks import get_task

ARTICLE_BATCH_SIZES = (1, 4, 8, 16, 32, 64, 128, 300)
ARTICLE_SEQ_LENGTHS = (80, 128, 384)
QUICK = dict(batch_sizes=(1, 2), seq_lengths=(16,), iters=2, warmup=1, max_seconds=2.0)


@dataclass(frozen=True)
class Point:
    engine: str
    recipe: str
    task: str
    seq_length: int
    batch_size: int
    round: int = 0


def plan(engines, recipes, tasks, seq_lengths, batch_sizes, rounds: int = 1) -> list[Point]:
    """Every combination, ``rounds`` times, in the order they run (one predictor per
    engine/recipe/task/seq; in each round, the engines in turn: see :func:`run_order`)."""
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    return [Point(e, get_recipe(r).name, get_task(t).name, int(s), int(b), n)
            for n in range(rounds) for e in run_order(engines, n)
            for r in recipes for t in tasks for s in seq_lengths for b in batch_sizes]


def run_order(engines, round_: int) -> list:
    """The engines of round ``round_``: as given in even rounds, reversed in odd ones (A B, B A,
    A B ...), so each engine is as often measured first as last."""
    engines = list(dict.fromkeys(engines))
    return engines[::-1] if round_ % 2 else engines


def point_of(rec: dict) -> Point | None:
    try:
        return Point(rec["engine"], rec["recipe"], rec["task"], int(rec["seq_length"]), int(rec["batch_size"]),
                     int(rec.get("round", 0)))
    except (KeyError, TypeError, ValueError):
        return None


def read_done(path: str, model: str, device: str) -> set[Point]:
    """Points of ``path`` already measured (or settled: not applicable, out of memory) for
    this model and device."""
    if not os.path.isfile(path):
        return set()
    done = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}: line {n} is not JSON; an interrupted write? remove that "
                                 "line to resume") from None
            if rec.get("sweep_model") == model and rec.get("device") == device and point_of(rec):
                done.add(point_of(rec))
    return done


def _inputs(task, n: int = 32):
    if get_task(task).kind == "qa":
        qa = D.sample_qa()
        return list(zip(qa.questions, qa.contexts)), qa.source
    try:
        ts = D.load_sst2("dev")
    except FileNotFoundError:
        ts = D.sample_sst()
    return ts.first[:max(n, 1)], ts.source


def run_sweep(points: list[Point], output: str, model: str = "random:bert_12_768_12",
              device: str = "cpu", warmup: int = 3, iters: int = 20, max_seconds: float | None = 10.0,
              resume: bool = True, progress: bool = True, vocab: str | None = None, log=print,
              isolate: bool | None = None) -> list[dict]:
    """Measure every point not yet in ``output`` (JSONL); returns the records written now.

    ``isolate`` (default: when the points span more than one engine or round) measures each
    engine of each round in a fresh process, one after the other, in the order of ``points``:
    MXNet's and PyTorch's OpenMP thread pools keep spinning after their own work and slow the
    other engine down when they share a process (on a 2-core CPU, transformers measured after
    MXNet took twice as long as alone).
    """
    from .api import load
    from .checkpoint import load_checkpoint
    done = read_done(output, model, device) if resume else set()
    if not resume and os.path.exists(output):
        os.remove(output)
    todo = [p for p in points if p not in done]
    if len(todo) < len(points):
        log(f"resuming: {len(points) - len(todo)} of {len(points)} points already in {output}")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    turns = list(dict.fromkeys((p.round, p.engine) for p in todo))
    rounds = {p.round for p in points}
    if isolate if isolate is not None else len({e for _, e in turns}) > 1 or len(rounds) > 1:
        written = []
        for n, engine in turns:
            log(f"engine {engine}{f', round {n + 1} of {len(rounds)}' if len(rounds) > 1 else ''}: "
                "measured in its own process")
            written += in_fresh_process(run_sweep, [p for p in todo if (p.round, p.engine) == (n, engine)],
                                        output, model, device, warmup, iters, max_seconds, True, progress,
                                        vocab, isolate=False)
        return written
    ckpt = load_checkpoint(model, vocab=vocab) if todo else None
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="sweep", unit="point")
    written, predictors = [], {}
    with open(output, "a", encoding="utf-8") as f:
        def put(rec):
            rec = {**rec, "sweep_model": model}
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            written.append(rec)
            if bar is not None:
                bar.update(1)
        try:
            for p in todo:
                base = {**asdict(p), "device": device}
                group = (p.engine, p.recipe, p.task, p.seq_length)
                if group not in predictors:
                    predictors.clear()  # one predictor alive at a time
                    try:
                        pred = load(task=p.task, engine=p.engine, recipe=p.recipe, device=device,
                                    seq_length=p.seq_length, checkpoint=ckpt)
                        texts, source = _inputs(p.task)
                        feats = pred.featurize(texts)
                        predictors[group] = (pred, getattr(feats, "batch", feats), source, None)
                    except NotApplicable as e:
                        predictors[group] = (None, None, None, ("not applicable", str(e)))
                    except (MXNetUnavailable, ORTUnavailable) as e:
                        predictors[group] = (None, None, None, ("not available", str(e)))
                pred, batch, source, failed = predictors[group]
                if failed:
                    status, reason = failed
                    put({**base, "dtype": get_recipe(p.recipe).dtype, "status": status,
                         "reason": reason})
                    continue
                for rec in measure_points(pred, batch, [p.batch_size], warmup=warmup, iters=iters,
                                          max_seconds=max_seconds, data=source, examples=len(batch),
                                          round=p.round):
                    put({**base, **rec} if rec["status"] != "ok" else rec)
        finally:
            if bar is not None:
                bar.close()
    return written


def read_sweep(path: str) -> list[dict]:
    from .bench import read_records
    return read_records(path)


def format_report(records: list[dict]) -> str:
    """One Markdown table per (engine, recipe, task, sequence length): latency per batch
    (mean, p50, p90, p99), per sequence, sequences/s, TFLOP/s; then the points that did not run;
    then real-traffic records (``bertg4 bench --traffic``) side by side
    (:func:`bertg4.traffic.format_traffic`)."""
    traffic = [r for r in records if r.get("traffic") or r.get("peer")]
    records = [r for r in records if not (r.get("traffic") or r.get("peer"))]
    ok = [r for r in records if r.get("status") == "ok"]
    groups = list(dict.fromkeys((r["engine"], r["recipe"], r["task"], r["seq_length"]) for r in ok))
    parts = []
    for g in groups:
        rows = sorted((r for r in ok if (r["engine"], r["recipe"], r["task"], r["seq_length"]) == g),
                      key=lambda r: (r["batch_size"], r.get("round", 0)))
        r0 = rows[0]
        rounds = any(r.get("round", 0) for r in rows)  # a column for the round when there are several

        def first(r):
            return f"| {r['batch_size']} | {r.get('round', 0) + 1} |" if rounds else f"| {r['batch_size']} |"
        parts.append(f"**{g[0]} {g[1]} ({r0['dtype']}), {g[2]}, seq {g[3]}** — {r0['model']} on "
                     f"{r0['device_name']}\n\n"
                     f"| batch |{' round |' if rounds else ''} ms/batch mean | p50 | p90 | p99 | ms/sequence | "
                     "sequences/s | TFLOP/s |\n"
                     f"|---:|{'---:|' if rounds else ''}---:|---:|---:|---:|---:|---:|---:|\n" +
                     "\n".join(f"{first(r)} {r['latency_ms_mean']:.2f} | {r['latency_ms_p50']:.2f} | "
                               f"{r['latency_ms_p90']:.2f} | {r['latency_ms_p99']:.2f} | "
                               f"{r['latency_ms_per_sequence']:.3f} | {r['sequences_per_s']:.1f} | "
                               f"{r['tflops_achieved']:.2f} |" for r in rows))
    pairs = {(r["engine"], r["recipe"]) for r in ok}
    if len(pairs) > 1:
        parts.append(format_comparison(ok))
        for yardstick in YARDSTICKS:  # ONNX Runtime, when measured: every pair as a ratio to it too
            if yardstick in pairs:
                parts.append(format_comparison(ok, yardstick))
    other = [r for r in records if r.get("status") != "ok"]
    if other:
        seen = dict.fromkeys((r.get("engine"), r.get("recipe"), r.get("task"), r.get("status"),
                              r.get("reason", "")) for r in other)
        parts.append("Did not run:\n\n" + "\n".join(f"- {e} {rc} {t}: {s} — {why}" for e, rc, t, s, why in seen))
    if traffic:
        from .traffic import format_traffic
        parts.append("Real traffic:\n\n" + format_traffic(traffic))
    return "\n\n".join(parts) if parts else "no records"


#: the yardstick of side-by-side tables, first one present wins
REFERENCES = [("hf", "sdpa-fp32"), ("hf", "baseline"), ("pt", "baseline")]
#: further side-by-side tables, one per yardstick measured: ONNX Runtime's optimized graph and its INT8
YARDSTICKS = [("ort", "baseline"), ("ort", "int8")]


def format_comparison(records: list[dict], reference: tuple[str, str] | None = None) -> str:
    """Engines and recipes side by side per (task, seq, batch): ms per batch and the speedup
    over ``reference`` (engine, recipe) -- by default transformers' sdpa fp32, else its eager
    fp32, else the pt baseline -- measured in the same run.

    With several rounds (``bertg4 bench --rounds``) a cell holds the median over rounds of the
    mean ms per batch, and the median of the speedups taken within each round (the reference
    and the pair measured next to each other), with their range."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    pairs = list(dict.fromkeys((r["engine"], r["recipe"]) for r in ok))
    if reference is None:
        reference = next((p for p in REFERENCES if p in pairs), pairs[0])
    if reference not in pairs:
        raise ValueError(f"reference {reference} is not among the records' engine/recipe pairs {pairs}")
    at = {}
    for r in ok:  # (pair, point) -> {round: ms per batch}
        at.setdefault((r["engine"], r["recipe"], r["task"], r["seq_length"], r["batch_size"]), {})[
            r.get("round", 0)] = r["latency_ms_mean"]
    rounds = len({r.get("round", 0) for r in ok})
    points = sorted({(r["task"], r["seq_length"], r["batch_size"]) for r in ok})
    head = "| task | seq | batch | " + " | ".join(f"{e} {rc}" for e, rc in pairs) + " |"
    title = f"Side by side: ms per batch (speedup over {reference[0]} {reference[1]}, same run)"
    if rounds > 1:
        title = (f"Side by side over {rounds} rounds: median ms per batch (median speedup over "
                 f"{reference[0]} {reference[1]} within each round, [lowest-highest])")
    lines = [title, "", head, "|---|---:|---:|" + "---:|" * len(pairs)]
    for t, s, b in points:
        ref = at.get((*reference, t, s, b), {})
        cells = []
        for e, rc in pairs:
            ms = at.get((e, rc, t, s, b))
            if ms is None:
                cells.append("–")
                continue
            cell = f"{float(np.median(list(ms.values()))):.1f}"
            ratios = [ref[n] / ms[n] for n in ms if n in ref]
            if ratios and rounds > 1:
                cell += f" ({float(np.median(ratios)):.2f}× [{min(ratios):.2f}-{max(ratios):.2f}])"
            elif ratios:
                cell += f" ({ratios[0]:.2f}×)"
            cells.append(cell)
        lines.append(f"| {t} | {s} | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median_rounds(records: list[dict]) -> list[dict]:
    """One record per point for the figures: of a point measured in several rounds (``bertg4
    bench --rounds``), the round with the median mean latency (the lower middle one of an even
    count; the tables take medians and per-round ratios, :func:`format_comparison`). Records
    of the same point from different runs (other models, devices, or files each with its own
    round 0) all stay, as do records without a point."""
    groups, rest = {}, []
    for r in records:
        p = point_of(r)
        if p is None or r.get("status") != "ok":
            rest.append(r)
        else:
            key = (replace(p, round=0), r.get("sweep_model", r.get("model")), r.get("device"), r.get("device_name"))
            groups.setdefault(key, []).append(r)
    for rows in groups.values():
        if len({r.get("round", 0) for r in rows}) < len(rows):  # not one run's rounds: keep them all
            rest += rows
            continue
        rows.sort(key=lambda r: r["latency_ms_mean"])
        rest.append(rows[(len(rows) - 1) // 2])
    return rest


def write_report(records: list[dict], out_dir: str) -> list[str]:
    """``report.md`` and PNGs: latency/throughput against batch size per sequence length
    (per engine/recipe/task), and each recipe's speedup per batch size (per engine/task/seq)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from . import plots
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "report.md")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(format_report(records) + "\n")
    records = median_rounds([r for r in records if not (r.get("traffic") or r.get("peer"))])  # figures: fixed shapes
    ok = [r for r in records if r.get("status") == "ok"]

    def slug(*parts):
        return "_".join(str(p).replace("+", "").replace("/", "-").replace(" ", "-") for p in parts)

    for e, rc, t in dict.fromkeys((r["engine"], r["recipe"], r["task"]) for r in ok):
        rows = [r for r in ok if (r["engine"], r["recipe"], r["task"]) == (e, rc, t)]
        fig = plots.latency_by_seq_length(rows)
        paths.append(os.path.join(out_dir, f"latency_{slug(e, rc, t)}.png"))
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    for e, t, s in dict.fromkeys((r["engine"], r["task"], r["seq_length"]) for r in ok):
        rows = [r for r in records if (r.get("engine"), r.get("task"), r.get("seq_length")) == (e, t, s)
                or (r.get("status") != "ok" and (r.get("engine"), r.get("task")) == (e, t))]
        if len({r["recipe"] for r in rows if r.get("status") == "ok"}) < 2:
            continue
        fig = plots.recipe_latency(rows)
        paths.append(os.path.join(out_dir, f"speedup_{slug(e, t, s)}.png"))
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths
