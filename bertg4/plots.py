"""matplotlib figures drawn from benchmark records (the CLI and the notebooks use these).

Every figure names the device that measured it. Speed figures draw the median (p50) with a
spread band (fastest to p90 of the timed iterations), say how many samples a p99 comes
from, and can carry a visible "timing noise" stamp (:func:`stamp_noise`) when the sizes are
smoke sizes or the machine is shared.
"""
from __future__ import annotations


def _readable_log(ax, axis: str = "y") -> None:
    """Label a log axis with plain numbers at steps that fit its range -- every 1..9 within a
    decade, 1-2-5 over a few, powers of ten beyond -- so even a range inside one decade has
    readable ticks (matplotlib's default labels only the powers of ten)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    span = hi / lo if lo > 0 else float("inf")
    subs = tuple(range(1, 10)) if span <= 12 else (1.0, 2.0, 5.0) if span <= 1e3 else (1.0,)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------------------
# Noise: spread bands, sample counts, the device, a visible stamp
# --------------------------------------------------------------------------------------

NOISE_GID = "timing-noise"


def stamp_noise(fig, reason: str):
    """Stamp ``fig`` with a large, visible "timing noise" mark and ``reason`` (smoke sizes, a
    shared CPU, too few iterations). The texts carry the gid ``"timing-noise"``. Returns fig."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"stamp_noise needs the reason the timings are noise, got {reason!r}")
    style = dict(ha="center", va="center", color="tab:red", alpha=0.35, rotation=15, zorder=20,
                 gid=NOISE_GID, transform=fig.transFigure)
    fig.text(0.5, 0.55, "TIMING NOISE", fontsize=30, weight="bold", **style)
    fig.text(0.5, 0.38, reason.strip(), fontsize=10, **style)
    return fig


def noise_reason(records: list[dict], smoke: bool = False, min_iterations: int = 10,
                 max_spread: float = 0.25) -> str | None:
    """Why these records' timings are noise, or None: ``smoke`` sizes, fewer than
    ``min_iterations`` timed iterations per point, or a median spread (p90 / p50 - 1) above
    ``max_spread``."""
    import numpy as np
    ok = [r for r in records if r.get("status", "ok") == "ok" and "latency_ms_p50" in r]
    why = ["smoke sizes"] if smoke else []
    iters = [r["iterations"] for r in ok if r.get("iterations") is not None]
    if iters and min(iters) < min_iterations:
        why.append(f"{min(iters)} timed iteration{'' if min(iters) == 1 else 's'} per point")
    spread = [r["latency_ms_p90"] / r["latency_ms_p50"] - 1 for r in ok
              if r.get("latency_ms_p90") and r["latency_ms_p50"] > 0]
    if spread and float(np.median(spread)) > max_spread:
        why.append(f"p90 {100 * float(np.median(spread)):.0f} % above p50 (median)")
    return "; ".join(why) or None


def _noise_text(noisy, records) -> str | None:
    if isinstance(noisy, str):
        return noisy
    if noisy:
        return noise_reason(records) or "small sizes or a shared machine"
    return None


def measured_on(records: list[dict]) -> str:
    """"measured on <device>" for the devices that measured ``records`` (every figure says it)."""
    names = list(dict.fromkeys(str(r.get("device_name") or r.get("measured_on") or "")
                               for r in records if r.get("device_name") or r.get("measured_on")))
    return "measured on " + ("; ".join(names) if names else "an unnamed device")


def _band(r: dict) -> tuple[float, float]:
    """A record's per-iteration spread around its p50: fastest (min) to p90 latency, in ms
    (p50 to p90 for records that do not keep the minimum)."""
    return r.get("latency_ms_min", r["latency_ms_p50"]), r["latency_ms_p90"]


def _iterations(records: list[dict]) -> str:
    n = sorted({r["iterations"] for r in records if r.get("iterations") is not None})
    if not n:
        return "? samples"
    return f"{n[0]} samples" if len(n) == 1 else f"{n[0]}-{n[-1]} samples"


def p99_label(records: list[dict]) -> str:
    """"p99 of N samples", saying when N is too small for a p99 to be more than the maximum."""
    n = [r["iterations"] for r in records if r.get("iterations") is not None]
    label = f"p99 of {_iterations(records)}"
    return label + " (≈ their max)" if n and min(n) < 100 else label


def speedups(records: list[dict], baseline: str = "baseline") -> list[dict]:
    """Speedup of every recipe over ``baseline`` per batch size, from bench records, within
    each (engine, device, task, sequence length).

    ``speedup`` is the baseline's p50 over the recipe's p50 (medians over repeated records of
    one point); ``low``/``high`` bound it with each side's per-iteration spread: baseline
    fastest / recipe p90 and baseline p90 / recipe fastest. ``verdict`` is "faster" or
    "slower" only when the whole band is on that side of 1, else "within the spread"; only
    those two may be stated as a speedup.
    """
    import numpy as np
    ok = [r for r in records if r.get("status", "ok") == "ok" and "latency_ms_p50" in r]
    ctx_keys = ("engine", "device_name", "task", "seq_length")
    points: dict[tuple, list[dict]] = {}
    for r in ok:
        points.setdefault((tuple(r.get(k) for k in ctx_keys), r["recipe"], r["batch_size"]), []).append(r)

    def stats(rows):
        return (float(np.median([r["latency_ms_p50"] for r in rows])),
                min(_band(r)[0] for r in rows), max(_band(r)[1] for r in rows))

    out = []
    for (ctx, recipe, b), rows in points.items():
        base = points.get((ctx, baseline, b))
        if base is None or recipe == baseline:
            continue
        (bm, blo, bhi), (m, lo, hi) = stats(base), stats(rows)
        low, high = blo / hi, bhi / lo
        verdict = "faster" if low > 1 else "slower" if high < 1 else "within the spread"
        out.append({**dict(zip(ctx_keys, ctx)), "model": rows[0].get("model"), "recipe": recipe,
                    "baseline": baseline, "batch_size": b, "speedup": bm / m, "low": low,
                    "high": high, "verdict": verdict, "repeats": len(rows),
                    "iterations": min((r.get("iterations") or 0) for r in rows + base)})
    order = {name: i for i, name in enumerate(dict.fromkeys(r["recipe"] for r in ok))}
    return sorted(out, key=lambda r: (str(r["engine"]), str(r["device_name"]), str(r["task"]),
                                      r["seq_length"] or 0, order[r["recipe"]], r["batch_size"]))


def _finish(fig, noisy, records: list[dict]):
    """Lay the figure out and stamp it when its timings are noise."""
    fig.tight_layout()
    reason = _noise_text(noisy, records)
    if reason:
        stamp_noise(fig, reason)
    return fig


def _untimed(records: list[dict]) -> str:
    """Title lines naming the rungs that were not timed: not applicable here, or emulated."""
    out = ""
    for status, label in (("not applicable", "not applicable here"), ("emulation", "emulated, not timed")):
        names = sorted({r["recipe"] for r in records if r.get("status") == status})
        if names:
            out += f"\n{label}: {', '.join(names)}"
    return out


def recipe_speedup(records: list[dict], baseline: str = "baseline", noisy=False):
    """The article's central figure: speedup of each rung over ``baseline`` against batch
    size, from bench records (:func:`speedups`: median line, per-iteration spread band).

    Rungs without a ``baseline`` record at the same batch size are not drawn; not-applicable
    rows are listed in the title; the title names the device that measured them. ``noisy``
    (True or the reason) stamps the figure "timing noise". Returns the Figure.
    """
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    rows = speedups(ok, baseline)
    if not rows:
        have = sorted({r.get("recipe") for r in ok}, key=str)
        raise ValueError(f"no speedups over {baseline!r}: need {baseline!r} and another recipe at "
                         f"the same batch sizes (recipes: {have})")
    contexts = list(dict.fromkeys((r["engine"], r["device_name"], r["task"], r["seq_length"]) for r in rows))
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for i, recipe in enumerate(dict.fromkeys(r["recipe"] for r in rows)):
        for ctx in contexts:
            pts = [r for r in rows if r["recipe"] == recipe and
                   (r["engine"], r["device_name"], r["task"], r["seq_length"]) == ctx]
            if not pts:
                continue
            b = [r["batch_size"] for r in pts]
            label = recipe if len(contexts) == 1 else f"{recipe} | {ctx[0]} seq {ctx[3]} {ctx[1]}"
            line, = ax.plot(b, [r["speedup"] for r in pts], "o-", label=label, color=plt.cm.tab10(i % 10))
            ax.fill_between(b, [r["low"] for r in pts], [r["high"] for r in pts],
                            color=line.get_color(), alpha=0.18, lw=0)
    sizes = sorted({r["batch_size"] for r in rows})
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=f"speedup over {baseline} (×)")
    ax.set_xticks(sizes, [str(x) for x in sizes])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    _readable_log(ax)
    ax.legend(fontsize=7, loc="best")
    r0 = rows[0]
    title = f"speedup over {baseline} | {r0['model']} | {r0['engine']} | {r0['task']} seq {r0['seq_length']}" \
        if len(contexts) == 1 else f"speedup over {baseline} | {r0['model']}"
    title += f" | {measured_on(ok)}\nline: p50 ratio (median of repeats); band: the per-iteration " \
             f"spread (fastest to p90), {_iterations(ok)} per point"
    title += _untimed(records)
    ax.set_title(title, fontsize=8)
    return _finish(fig, noisy, ok)


# --------------------------------------------------------------------------------------
# Latency and throughput
# --------------------------------------------------------------------------------------

def latency_throughput(records: list[dict], highlight: int | None = None, noisy=False):
    """Latency per batch (p50 line, fastest-to-p90 spread band, p99 with its sample count)
    and throughput against batch size.

    ``records``: rows from :func:`bertg4.bench.measure`/``record`` for one engine,
    recipe and sequence length. ``highlight`` marks one batch size; ``noisy`` (True or the
    reason) stamps the figure "timing noise". Returns the Figure.
    """
    import matplotlib.pyplot as plt
    rows = sorted(records, key=lambda r: r["batch_size"])
    if not rows:
        raise ValueError("no records to plot")
    b = [r["batch_size"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    line, = ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label="p50")
    ax1.fill_between(b, [_band(r)[0] for r in rows], [_band(r)[1] for r in rows], alpha=0.25,
                     color=line.get_color(), lw=0, label=f"spread: fastest to p90 ({_iterations(rows)})")
    if all("latency_ms_p99" in r for r in rows):
        ax1.plot(b, [r["latency_ms_p99"] for r in rows], "v:", color="grey", ms=4, label=p99_label(rows))
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per batch (ms)")
    ax2.plot(b, [r["sequences_per_s"] for r in rows], "o-", color="tab:green")
    ax2.set(xscale="log", xlabel="batch size", ylabel="sequences / s")
    for ax in (ax1, ax2):
        ax.set_xticks(b, [str(x) for x in b])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    _readable_log(ax1)
    if highlight is not None:
        for ax in (ax1, ax2):
            ax.axvline(highlight, color="tab:red", ls="--", lw=1)
    r0 = rows[0]
    fig.suptitle(f"{r0.get('model')} | {r0.get('engine')} {r0.get('recipe')} ({r0.get('dtype')}) | seq "
                 f"{r0.get('seq_length')} | {measured_on(rows)}", fontsize=9)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    reason = _noise_text(noisy, rows)
    if reason:
        stamp_noise(fig, reason)
    return fig


def _group_label(r: dict) -> str:
    if r.get("workload") == "real traffic":
        return f"real traffic: {r.get('traffic')}" + (f", padding {r['padding']}" if r.get("padding") else "")
    return f"seq {r.get('seq_length')}"


def cost_per_million_bars(rows: list[dict], noisy=False):
    """Dollars per 1M sequences, one group of bars per sequence length (fixed shape) or
    real-traffic set.

    ``rows``: :func:`bertg4.cost.cost_table` rows (or :func:`bertg4.cost.batch_points` rows,
    one bar each, labelled with their point), optionally with
    :data:`bertg4.cost.ARTICLE_REFERENCE` rows, hatched and labelled "article (reference)".
    Without points, one bar per (instance, engine/recipe, device): its cheapest batch,
    annotated. Hypothetical rows (a price for hardware that did not run the measurement)
    are never drawn beside measured ones: the figure says how many were left to the table.
    The title names the device(s) that measured the bars. ``noisy`` (True or the reason)
    stamps the figure "timing noise". Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    if not rows:
        raise ValueError("no cost rows to plot")
    hypothetical = [r for r in rows if r.get("kind") == "hypothetical" or
                    (r.get("kind") != "reference" and r.get("hypothetical"))]
    unmeasured = [r for r in rows if r.get("dollars_per_million") is None]
    drawn = [r for r in rows if r not in hypothetical and r not in unmeasured]
    if not drawn:
        raise ValueError(f"nothing to draw: {len(hypothetical)} hypothetical rows (priced at hardware "
                         "that did not run them) are for a table, not a bar chart; give measured or "
                         "reference rows")
    best: dict[tuple, dict] = {}
    for r in drawn:
        key = (_group_label(r), r.get("kind", "measured"), r["instance"], r.get("engine"), r.get("recipe"),
               r.get("measured_on"), r.get("point") or "")
        if key not in best or r["dollars_per_million"] < best[key]["dollars_per_million"]:
            best[key] = r
    types = list(dict.fromkeys(k[2].split("@")[0] for k in best))
    colors = {t: plt.cm.tab10(i % 10) for i, t in enumerate(types)}
    devices = list(dict.fromkeys(r.get("measured_on") for r in best.values() if r.get("kind") != "reference"))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(best) + 2), 4.2))
    x, ticks, labels, groups, has_ref = 0.0, [], [], [], False
    for group_name in dict.fromkeys(k[0] for k in sorted(best, key=lambda k: (k[1] == "reference", k[0]))):
        group = sorted((k for k in best if k[0] == group_name), key=lambda k: (k[1] == "reference", k[2:]))
        start = x
        for key in group:
            r = best[key]
            ref = key[1] == "reference"
            has_ref |= ref
            ax.bar(x, r["dollars_per_million"], color=colors[key[2].split("@")[0]],
                   hatch="//" if ref else None, edgecolor="black" if ref else None)
            ax.annotate(f"${r['dollars_per_million']:.3g}\nb{r.get('batch_size')}",
                        (x, r["dollars_per_million"]), ha="center", va="bottom", fontsize=7)
            ticks.append(x)
            label = key[2] if ref else f"{key[2]}\n{r.get('engine')} {r.get('recipe')}"
            if len(devices) > 1 and not ref:
                label += f"\n{str(r.get('measured_on'))[:24]}"
            if r.get("point"):
                label += "\n" + r["point"].replace(" (the article's)", "").replace("; cheapest", " = cheapest")
            labels.append(label)
            x += 1.0
        groups.append(((start + x - 1.0) / 2, group_name))
        x += 0.8
    ax.set_xticks(ticks, labels, rotation=0, fontsize=6.5)
    depth = max(label.count("\n") + 1 for label in labels)
    for xc, group_name in groups:
        ax.text(xc, -0.06 - 0.055 * depth, group_name, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8, weight="bold")
    ax.set(yscale="log", ylabel="$ per 1M sequences")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 4)  # room for the labels above the bars
    ax.grid(axis="y", alpha=0.3)
    if has_ref:
        ax.legend(handles=[Patch(facecolor="white", edgecolor="black", hatch="//",
                                 label="article (reference, 2020)")], fontsize=8)
    title = (measured_on([r for r in best.values() if r.get("kind") != "reference"])
             if devices else "article's figures only (reference): nothing measured here was priced at its own hardware")
    notes = []
    if hypothetical:
        notes.append(f"{len(hypothetical)} hypothetical prices (hardware that did not run the measurement) "
                     "are not drawn: see the hypothetical table")
    if unmeasured:
        notes.append("not measured: " + "; ".join(sorted({str(r.get("point") or r.get("batch_size"))
                                                            for r in unmeasured})))
    import textwrap
    ax.set_title("\n".join([title] + [textwrap.fill(n, 90) for n in notes]), fontsize=8)
    fig.tight_layout()
    reason = _noise_text(noisy, [])
    if reason:
        stamp_noise(fig, reason)
    return fig


def cost_vs_latency_target(slo_rows: list[dict], noisy=False):
    """Dollars per 1M requests against the p99 latency target, one line per instance.

    ``slo_rows``: rows from :func:`bertg4.cost.slo_cost` (concatenate several instances'
    rows to compare them). Targets no setting meets are left out of the line. Each point
    is annotated with its best max_batch; each line's label names the device that measured
    the latency curve (``measured_on`` or ``device_name`` of the rows). Prices for hardware
    that did not measure the curve (``hypothetical``; rows without it: any price that is not a
    catalogue instance of the rows' device) go to a second panel of their own.
    ``noisy`` (True or the reason) stamps the figure "timing noise". Returns the Figure.
    """
    import matplotlib.pyplot as plt
    if not slo_rows:
        raise ValueError("no SLO rows to plot")
    from .cost import CATALOGUE, same_hardware

    def own(r) -> bool:
        """The price is for the hardware that measured the curve (rows without ``hypothetical``:
        a catalogue instance and the rows' device; anything else is not known to be)."""
        if r.get("hypothetical") is not None:
            return not r["hypothetical"]
        dev = r.get("measured_on") or r.get("device_name")
        inst = CATALOGUE.get(r["instance"])
        return bool(dev and inst and same_hardware({"device_name": dev, "device": r.get("device")}, inst))

    hyp = [r for r in slo_rows if not own(r)]
    panels = [("measured: priced at the machine that measured the curve", [r for r in slo_rows if own(r)])]
    if hyp:
        panels.append(("hypothetical: priced at hardware that did not measure the curve (or not known to)", hyp))
    panels = [(t, rows) for t, rows in panels if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 3.9), squeeze=False)
    for ax, (what, rows) in zip(axes[0], panels):
        for name in dict.fromkeys(r["instance"] for r in rows):
            mine = [r for r in rows if r["instance"] == name]
            pts = sorted((r["p99_target_s"] * 1e3, r["dollars_per_million"], r["max_batch"])
                         for r in mine if r["dollars_per_million"] is not None)
            if not pts:
                continue
            dev = mine[0].get("measured_on") or mine[0].get("device_name")
            label = name if not dev or str(dev) in name else f"{name} (curve measured on {dev})"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if what.startswith("measured") else "o--",
                    label=label)
            for t, d, b in pts:
                ax.annotate(f"b{b}", (t, d), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set(xscale="log", yscale="log", xlabel="p99 latency target (ms)",
               ylabel="$ per 1M requests")
        ax.set_title(f"{what}\nat the highest request rate whose p99 meets the target", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            _readable_log(ax, "x")
            _readable_log(ax, "y")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no target met at any rate", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    reason = _noise_text(noisy, [])
    if reason:
        stamp_noise(fig, reason)
    return fig


def recipe_latency(records: list[dict], baseline: str | None = None, highlight: int | None = None,
                   noisy=False):
    """Latency per batch (p50, with the fastest-to-p90 spread band) against batch size, one
    line per recipe, and each recipe's speedup over ``baseline`` (default: the first recipe)
    with its band (:func:`speedups`). Not-applicable rows are listed in the title, not drawn;
    the title names the device. ``noisy`` (True or the reason) stamps the figure "timing
    noise". Returns the Figure."""
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no timed records to plot")
    names = list(dict.fromkeys(r["recipe"] for r in ok))
    baseline = baseline or names[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    gains = speedups(ok, baseline)
    for i, name in enumerate(names):
        color = plt.cm.tab10(i % 10)
        rows = sorted((r for r in ok if r["recipe"] == name), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rows]
        ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label=name, color=color)
        ax1.fill_between(b, [_band(r)[0] for r in rows], [_band(r)[1] for r in rows], color=color,
                         alpha=0.15, lw=0)
        pts = [g for g in gains if g["recipe"] == name]
        if name == baseline:
            ax2.plot(b, [1.0] * len(b), "o-", color=color, label=name)
        elif pts:
            ax2.plot([g["batch_size"] for g in pts], [g["speedup"] for g in pts], "o-", color=color,
                     label=name)
            ax2.fill_between([g["batch_size"] for g in pts], [g["low"] for g in pts],
                             [g["high"] for g in pts], color=color, alpha=0.15, lw=0)
    sizes = sorted({r["batch_size"] for r in ok})
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per batch, p50 (ms)")
    ax2.set(xscale="log", xlabel="batch size", ylabel=f"speedup over {baseline}")
    ax2.axhline(1.0, color="grey", lw=0.8)
    for ax in (ax1, ax2):
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        if highlight is not None:
            ax.axvline(highlight, color="tab:red", ls="--", lw=1)
    _readable_log(ax1)
    ax1.legend(fontsize=7)
    r0 = ok[0]
    title = (f"{r0.get('model')} | {r0.get('engine')} | seq {r0.get('seq_length')} | {measured_on(ok)}\n"
             f"bands: per-iteration spread, fastest to p90 ({_iterations(ok)} per point)")
    title += _untimed(records)
    fig.suptitle(title, fontsize=9)
    return _finish(fig, noisy, ok)


def accumulation_error(rows: list[dict], device_name: str | None = None):
    """GEMM relative error against the inner dimension: fp32 accumulation (measured) and fp16
    accumulation (emulated; the legend says so). The title names the device
    (``device_name``, or the rows' own). Returns the Figure."""
    import matplotlib.pyplot as plt
    k = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(k, [r["fp32_accumulate_rel_error"] for r in rows], "o-", label="fp16 inputs, fp32 accumulation")
    ax.plot(k, [r["fp16_accumulate_rel_error_emulated"] for r in rows], "s-",
            label="fp16 accumulation (CPU emulation)")
    ax.set(xscale="log", yscale="log", xlabel="inner dimension k", ylabel="max relative error")
    dev = device_name or next((r.get("device_name") for r in rows if r.get("device_name")), None)
    if dev:
        ax.set_title(f"measured on {dev}", fontsize=9)
    ax.set_xticks(k, [str(x) for x in k])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def graph_nodes(report: dict, top: int = 12, graph: str = "torch.fx graph"):
    """Node counts by kind before and after the graph pass (the kinds that changed first), from
    the report of :mod:`bertg4.pt.graph_pass` or :mod:`bertg4.mx.graph_pass` (``graph`` names
    which graph). Returns the Figure."""
    import matplotlib.pyplot as plt
    before, after = report["nodes_before"], report["nodes_after"]
    kinds = sorted(set(before) | set(after),
                   key=lambda k: (before.get(k, 0) == after.get(k, 0), -max(before.get(k, 0), after.get(k, 0))))
    kinds = [k for k in kinds if k not in ("placeholder", "output")][:top]
    y = range(len(kinds))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(kinds) + 1.2))
    ax.barh([i + 0.2 for i in y], [before.get(k, 0) for k in kinds], 0.4, label="before the pass")
    ax.barh([i - 0.2 for i in y], [after.get(k, 0) for k in kinds], 0.4, label="after the pass")
    ax.set_yticks(list(y), kinds, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"nodes in the {graph}")
    ax.legend(fontsize=8)
    bias_gelu = (f"{report['bias_gelu_fused']} FFN biases moved next to GELU (bias_gelu)" if "bias_gelu_fused" in report
                 else f"{report['bias_gelu_split']} bias adds moved next to GELU")
    ax.set_title(f"{bias_gelu}, {report['qkv_prearranged']} QKV tensors prearranged", fontsize=9)
    fig.tight_layout()
    return fig


def interleaved_layout(rows: list[tuple[str, int, int]], heads: int):
    """The fused QKV weight's rows, coloured by projection (q, k, v) and shaded by head, as
    :func:`bertg4.explain.interleaved_rows` lists them. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    base = {"q": np.array([0.12, 0.47, 0.71]), "k": np.array([1.0, 0.5, 0.05]),
            "v": np.array([0.17, 0.63, 0.17])}
    img = np.array([[base[w] * (0.55 + 0.45 * (h % 2))] for w, h, _ in rows]).transpose(1, 0, 2)
    fig, ax = plt.subplots(figsize=(10, 1.6))
    ax.imshow(img, aspect="auto", interpolation="nearest")
    ax.set_yticks([])
    block = len(rows) // heads
    ax.set_xticks([h * block + block / 2 - 0.5 for h in range(heads)],
                  [f"head {h}" for h in range(heads)], fontsize=7)
    for h in range(1, heads):
        ax.axvline(h * block - 0.5, color="white", lw=1.5)
    ax.set_xlabel("rows of the fused (3·hidden, hidden) weight: [q_h; k_h; v_h] per head "
                  "(blue q, orange k, green v)", fontsize=8)
    fig.tight_layout()
    return fig


def latency_by_seq_length(records: list[dict], noisy=False):
    """Latency per batch (p50 with the fastest-to-p90 spread band) and sequences/s against
    batch size, one line per sequence length (the article's first two figures), for one
    engine, recipe and task; the title names the device. ``noisy`` (True or the reason)
    stamps the figure "timing noise"."""
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no timed records to plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, seq in enumerate(sorted({r["seq_length"] for r in ok})):
        color = plt.cm.tab10(i % 10)
        rows = sorted((r for r in ok if r["seq_length"] == seq), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rows]
        ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label=f"seq {seq}", color=color)
        ax1.fill_between(b, [_band(r)[0] for r in rows], [_band(r)[1] for r in rows], color=color,
                         alpha=0.15, lw=0)
        ax2.plot(b, [r["sequences_per_s"] for r in rows], "o-", label=f"seq {seq}", color=color)
    sizes = sorted({r["batch_size"] for r in ok})
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per batch, p50 (ms)")
    ax2.set(xscale="log", xlabel="batch size", ylabel="sequences / s")
    for ax in (ax1, ax2):
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _readable_log(ax1)
    r0 = ok[0]
    fig.suptitle(f"{r0.get('model')} | {r0.get('engine')} {r0.get('recipe')} ({r0.get('dtype')}) | "
                 f"{r0.get('task')} | {measured_on(ok)}\nband: per-iteration spread, fastest to p90 "
                 f"({_iterations(ok)} per point)", fontsize=9)
    return _finish(fig, noisy, ok)


def op_breakdown(records: list[dict], noisy=False):
    """Where the time of one forward pass goes: share of each operation type, one horizontal
    stacked bar per engine/recipe (the article's operator chart).

    ``records``: rows from :func:`bertg4.profile.profile_ops` (one per category). Segments
    of 4 % or more are labelled with their share; each bar's right end gives its total ms
    per forward. Not-applicable rows are listed in the title, not drawn. ``noisy`` (True or
    the reason) stamps the figure "timing noise". Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from .profile import CATEGORIES
    ok = [r for r in records if r.get("status", "ok") == "ok" and "category" in r]
    if not ok:
        raise ValueError("no profile records to plot")
    shapes = {(r["task"], r["batch_size"], r["seq_length"], r["device_name"]) for r in ok}

    def key(r):
        label = f"{r['engine']} {r['recipe']} ({r['dtype']})"
        if len(shapes) > 1:
            label += f"\n{r['task']} b{r['batch_size']} s{r['seq_length']}"
        return label

    bars = list(dict.fromkeys(key(r) for r in ok))
    cats = [c for c in CATEGORIES if any(r["category"] == c for r in ok)]
    cats += sorted({r["category"] for r in ok} - set(CATEGORIES))
    share = {(key(r), r["category"]): 100.0 * r["share"] for r in ok}
    total = {key(r): r["total_ms"] for r in ok}
    colors = {c: plt.cm.tab10(i % 10) for i, c in enumerate(cats)}
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(bars) + 1.8))
    y = range(len(bars))
    left = [0.0] * len(bars)
    for c in cats:
        widths = [share.get((b, c), 0.0) for b in bars]
        ax.barh(list(y), widths, left=left, color=colors[c], label=c, height=0.6)
        for i, (x0, w) in enumerate(zip(left, widths)):
            if w >= 4.0:
                ax.text(x0 + w / 2, i, f"{w:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if c in (cats[0], cats[1]) else "black")
        left = [a + w for a, w in zip(left, widths)]
    for i, b in enumerate(bars):
        ax.text(101, i, f"{total[b]:.0f} ms" if total[b] >= 100 else f"{total[b]:.1f} ms",
                va="center", fontsize=7)
    ax.set_yticks(list(y), bars, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of profiled time per forward (%)")
    ax.text(101, -0.6, "ms per\nforward", va="bottom", fontsize=7)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    r0 = ok[0]
    title = f"{r0['model']} | {r0['time_basis']} | {r0['device_name']}"
    if len(shapes) == 1:
        title = f"{r0['model']} | {r0['task']} batch {r0['batch_size']} seq {r0['seq_length']} | " \
                f"{r0['device_name']}\n{r0['time_basis']}"
    na = sorted({f"{r['engine']} {r['recipe']}" for r in records if r.get("status") == "not applicable"})
    if na:
        title += f"\nnot applicable here: {', '.join(na)}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    reason = _noise_text(noisy, [])
    if reason:
        stamp_noise(fig, reason)
    return fig


def traffic_label(r: dict) -> str:
    """"engine recipe, padding" for a real-traffic record (a peer: its name and its padding)."""
    if r.get("peer"):
        return f"{r['engine']} ({r.get('padding')})"
    return f"bertg4 {r['engine']} {r.get('recipe')}, {r.get('padding')}"


def traffic_throughput(records: list[dict], lengths=None, seq_length: int | None = None, noisy=False):
    """Real traffic: the request-length histogram (``lengths``: tokens per request, with
    ``seq_length`` marked) beside sentences/s of every engine and padding mode and every peer
    on that traffic, one bar each with its spread over repeats (slowest to fastest pass) and
    its padding waste (computed tokens / real tokens). ``records``: real-traffic records of
    :func:`bertg4.traffic.run_traffic` (``status`` ok) of one traffic source and batch size.
    The title names the device; ``noisy`` stamps the figure. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    ok = [r for r in records if r.get("status") == "ok" and r.get("sentences_per_s")]
    if not ok:
        raise ValueError("no measured real-traffic records to plot")
    sources = {(r.get("traffic"), r.get("batch_size")) for r in ok}
    if len(sources) > 1:
        raise ValueError(f"one traffic source and batch size per figure, got {sorted(map(str, sources))}")
    (traffic, batch_size), = sources
    ok = sorted(ok, key=lambda r: r["sentences_per_s"])
    hist = lengths is not None
    fig, axes = plt.subplots(1, 2 if hist else 1, figsize=(11 if hist else 6.5, 0.45 * len(ok) + 2.4),
                             gridspec_kw={"width_ratios": [1, 1.6]} if hist else None)
    ax = axes[-1] if hist else axes
    if hist:
        v = np.asarray(lengths)
        h = axes[0]
        h.hist(v, bins=min(40, max(5, int(v.max() - v.min() + 1))), color="tab:blue", alpha=0.8)
        for q, style, label in ((np.mean(v), "-", "mean"), (np.percentile(v, 99), "--", "p99")):
            h.axvline(q, color="black", ls=style, lw=1, label=label)
        h.legend(fontsize=7)
        h.set(xlabel="tokens per request (WordPiece, with [CLS] and [SEP])", ylabel="requests",
              title=f"{traffic}: {len(v)} requests, mean {v.mean():.1f}, p99 {np.percentile(v, 99):.0f}, "
                    f"max {v.max()}" + (f"\nfixed padding computes {seq_length} per request" if seq_length else ""))
        h.title.set_fontsize(8)
    y = np.arange(len(ok))
    rate = np.array([r["sentences_per_s"] for r in ok])
    lo = np.array([r["rows"] / r["seconds_max"] for r in ok])
    hi = np.array([r["rows"] / r["seconds_min"] for r in ok])
    colors = ["tab:gray" if r.get("peer") else "tab:green" for r in ok]
    ax.barh(y, rate, color=colors, xerr=[rate - lo, hi - rate], capsize=3, alpha=0.85)
    for k, r in enumerate(ok):
        ax.annotate(f" {r['sentences_per_s']:.0f}/s, waste {r['padding_waste']:.2f}", (hi[k], k),
                    va="center", fontsize=7)
    ax.set_yticks(y, [traffic_label(r) for r in ok], fontsize=7)
    ax.set(xlabel="sentences/s (median pass; bar: slowest to fastest)")
    ax.set_xlim(0, hi.max() * 1.45)
    ax.grid(axis="x", alpha=0.3)
    reps = sorted({r.get("repeats") for r in ok})
    ax.set_title(f"{traffic}, batch {batch_size}, {'-'.join(map(str, [reps[0], reps[-1]][:len(set(reps))]))} "
                 f"timed passes each; green: bertg4, gray: peers\n{measured_on(ok)}", fontsize=8)
    return _finish(fig, noisy, ok)
