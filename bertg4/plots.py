"""matplotlib figures drawn from benchmark records (the CLI and the notebooks use these)."""
from __future__ import annotations


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
    if highlight is not None:
        for ax in (ax1, ax2):
            ax.axvline(highlight, color="tab:red", ls="--", lw=1)
    r0 = rows[0]
    fig.suptitle(f"{r0['model']} | {r0['engine']} {r0['recipe']} ({r0['dtype']}) | seq "
                 f"{r0['seq_length']} | {r0['device_name']}", fontsize=9)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig
