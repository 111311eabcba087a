"""matplotlib figures drawn from benchmark records (the CLI and the notebooks use these)."""
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


def latency_throughput(records: list[dict], highlight: int | None = None):
    """Latency per batch (p50, with p90-p99 band) and throughput against batch size.

    ``records``: rows from :func:`bertg4.bench.measure`/``record`` for one engine,
    recipe and sequence length. ``highlight`` marks one batch size. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    rows = sorted(records, key=lambda r: r["batch_size"])
    if not rows:
        raise ValueError("no records to plot")
    b = [r["batch_size"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label="p50")
    ax1.fill_between(b, [r["latency_ms_p90"] for r in rows], [r["latency_ms_p99"] for r in rows],
                     alpha=0.3, label="p90-p99")
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
    fig.suptitle(f"{r0['model']} | {r0['engine']} {r0['recipe']} ({r0['dtype']}) | seq "
                 f"{r0['seq_length']} | {r0['device_name']}", fontsize=9)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cost_per_million_bars(rows: list[dict]):
    """Dollars per 1M sequences per instance, one group of bars per sequence length.

    ``rows``: :func:`bertg4.cost.cost_table` rows, optionally with
    :data:`bertg4.cost.ARTICLE_REFERENCE` rows, which are hatched and labelled
    "article (reference)". One bar per (instance, measured/reference, sequence length):
    the cheapest row of that group, with its batch size. A ``*`` marks a price applied to
    a measurement from other hardware (``hypothetical``). Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    if not rows:
        raise ValueError("no cost rows to plot")
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["seq_length"], r.get("kind", "measured"), r["instance"])
        if key not in best or r["dollars_per_million"] < best[key]["dollars_per_million"]:
            best[key] = r
    types = list(dict.fromkeys(k[2].split("@")[0] for k in best))
    colors = {t: plt.cm.tab10(i % 10) for i, t in enumerate(types)}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(best) + 2), 3.8))
    x, ticks, labels, has_ref = 0.0, [], [], False
    for seq in sorted({k[0] for k in best}):
        group = sorted((k for k in best if k[0] == seq), key=lambda k: (k[1] != "reference", k[2]))
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
            labels.append(key[2] + ("*" if r.get("hypothetical") else ""))
            x += 1.0
        ax.text((start + x - 1.0) / 2, -0.28, f"seq {seq}", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=9)
        x += 0.8
    ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
    ax.set(yscale="log", ylabel="$ per 1M sequences")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 4)  # room for the labels above the bars
    ax.grid(axis="y", alpha=0.3)
    if has_ref:
        ax.legend(handles=[Patch(facecolor="white", edgecolor="black", hatch="//",
                                 label="article (reference)")], fontsize=8)
    if any(r.get("hypothetical") for r in best.values()):
        ax.set_title("* priced at an instance whose hardware did not run the measurement",
                     fontsize=8)
    fig.tight_layout()
    return fig


def cost_vs_latency_target(slo_rows: list[dict]):
    """Dollars per 1M requests against the p99 latency target, one line per instance.

    ``slo_rows``: rows from :func:`bertg4.cost.slo_cost` (concatenate several instances'
    rows to compare them). Targets no setting meets are left out of the line. Each point
    is annotated with its best max_batch. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    if not slo_rows:
        raise ValueError("no SLO rows to plot")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in dict.fromkeys(r["instance"] for r in slo_rows):
        pts = sorted((r["p99_target_s"] * 1e3, r["dollars_per_million"], r["max_batch"])
                     for r in slo_rows if r["instance"] == name and r["dollars_per_million"] is not None)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        for t, d, b in pts:
            ax.annotate(f"b{b}", (t, d), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="p99 latency target (ms)",
           ylabel="$ per 1M requests")
    ax.set_title("at the highest request rate whose p99 meets the target", fontsize=9)
    ax.grid(alpha=0.3)
    _readable_log(ax, "x")
    _readable_log(ax, "y")
    if ax.get_lines():
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no target met at any rate", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    return fig


def recipe_latency(records: list[dict], baseline: str | None = None, highlight: int | None = None):
    """Latency per batch (p50) against batch size, one line per recipe, and each recipe's
    speedup over ``baseline`` (default: the first recipe). Not-applicable rows are listed
    in the title, not drawn. Returns the Figure."""
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no timed records to plot")
    names = list(dict.fromkeys(r["recipe"] for r in ok))
    baseline = baseline or names[0]
    base = {r["batch_size"]: r["latency_ms_p50"] for r in ok if r["recipe"] == baseline}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in names:
        rows = sorted((r for r in ok if r["recipe"] == name), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rows]
        ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label=name)
        pairs = [(r["batch_size"], base[r["batch_size"]] / r["latency_ms_p50"]) for r in rows
                 if r["batch_size"] in base]
        if pairs:
            ax2.plot(*zip(*pairs), "o-", label=name)
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
    na = sorted({r["recipe"] for r in records if r.get("status") == "not applicable"})
    r0 = ok[0]
    title = f"{r0['model']} | {r0['engine']} | seq {r0['seq_length']} | {r0['device_name']}"
    if na:
        title += f"\nnot applicable here: {', '.join(na)}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def accumulation_error(rows: list[dict]):
    """GEMM relative error against the inner dimension: fp32 accumulation (measured) and fp16
    accumulation (emulated; the legend says so). Returns the Figure."""
    import matplotlib.pyplot as plt
    k = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(k, [r["fp32_accumulate_rel_error"] for r in rows], "o-", label="fp16 inputs, fp32 accumulation")
    ax.plot(k, [r["fp16_accumulate_rel_error_emulated"] for r in rows], "s-",
            label="fp16 accumulation (CPU emulation)")
    ax.set(xscale="log", yscale="log", xlabel="inner dimension k", ylabel="max relative error")
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
    bias_gelu = (f"{report['bias_gelu_fused']} bias+GELU fused" if "bias_gelu_fused" in report
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


def latency_by_seq_length(records: list[dict]):
    """Latency per batch (p50) and sequences/s against batch size, one line per sequence
    length (the article's first two figures), for one engine, recipe and task."""
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no timed records to plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for seq in sorted({r["seq_length"] for r in ok}):
        rows = sorted((r for r in ok if r["seq_length"] == seq), key=lambda r: r["batch_size"])
        b = [r["batch_size"] for r in rows]
        ax1.plot(b, [r["latency_ms_p50"] for r in rows], "o-", label=f"seq {seq}")
        ax2.plot(b, [r["sequences_per_s"] for r in rows], "o-", label=f"seq {seq}")
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
    fig.suptitle(f"{r0['model']} | {r0['engine']} {r0['recipe']} ({r0['dtype']}) | {r0['task']} | "
                 f"{r0['device_name']}", fontsize=9)
    fig.tight_layout()
    return fig


def op_breakdown(records: list[dict]):
    """Where the time of one forward pass goes: share of each operation type, one horizontal
    stacked bar per engine/recipe (the article's operator chart).

    ``records``: rows from :func:`bertg4.profile.profile_ops` (one per category). Segments
    of 4 % or more are labelled with their share; each bar's right end gives its total ms
    per forward. Not-applicable rows are listed in the title, not drawn. Returns the Figure.
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
    return fig
