"""ipywidgets sliders over pure functions (testable without a browser)."""
from __future__ import annotations


def batch_size_view(records: list[dict]):
    """A pure function ``view(batch_size) -> record`` that also draws the latency/throughput figure."""
    by_size = {r["batch_size"]: r for r in records}

    def view(batch_size: int) -> dict:
        if batch_size not in by_size:
            raise ValueError(f"batch size {batch_size} was not measured; measured: {sorted(by_size)}")
        import matplotlib.pyplot as plt
        from .plots import latency_throughput
        fig = latency_throughput(records, highlight=batch_size)
        plt.show()
        r = by_size[batch_size]
        print(f"batch {batch_size}: {r['latency_ms_p50']:.2f} ms per batch (p50), "
              f"{r['latency_ms_per_sequence']:.3f} ms per sequence, {r['sequences_per_s']:.1f} sequences/s")
        plt.close(fig)
        return r

    return view


def batch_size_slider(records: list[dict]):
    """``ipywidgets.interactive`` over :func:`batch_size_view`; ``w.result`` is the chosen record."""
    import ipywidgets as widgets
    sizes = sorted({r["batch_size"] for r in records})
    slider = widgets.SelectionSlider(options=sizes, value=sizes[0], description="batch size",
                                     continuous_update=False)
    return widgets.interactive(batch_size_view(records), batch_size=slider)


def recipe_view(records: list[dict], baseline: str | None = None):
    """A pure function ``view(batch_size) -> {recipe: speedup over baseline}`` that draws
    :func:`bertg4.plots.recipe_latency` with that batch size marked."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    names = list(dict.fromkeys(r["recipe"] for r in ok))
    baseline = baseline or names[0]
    lat = {(r["recipe"], r["batch_size"]): r["latency_ms_p50"] for r in ok}

    def view(batch_size: int) -> dict:
        if (baseline, batch_size) not in lat:
            raise ValueError(f"batch size {batch_size} was not measured for {baseline}")
        import matplotlib.pyplot as plt
        from .plots import recipe_latency
        fig = recipe_latency(records, baseline, highlight=batch_size)
        plt.show()
        plt.close(fig)
        speedup = {n: lat[(baseline, batch_size)] / lat[(n, batch_size)] for n in names
                   if (n, batch_size) in lat}
        for n, s in speedup.items():
            print(f"batch {batch_size}: {n:<22} {lat[(n, batch_size)]:9.2f} ms per batch, "
                  f"{s:5.2f}x {baseline}")
        return speedup

    return view


def recipe_slider(records: list[dict], baseline: str | None = None):
    """``ipywidgets.interactive`` over :func:`recipe_view`; ``w.result`` maps recipe -> speedup."""
    import ipywidgets as widgets
    sizes = sorted({r["batch_size"] for r in records if r.get("status", "ok") == "ok"})
    slider = widgets.SelectionSlider(options=sizes, value=sizes[0], description="batch size",
                                     continuous_update=False)
    return widgets.interactive(recipe_view(records, baseline), batch_size=slider)


def cost_view(records: list[dict], instances):
    """A pure function ``view(batch_size, seq_length) -> {instance: $ per 1M}`` over timing
    records, priced at ``instances`` (catalogue names, ``name=price`` or Instances)."""
    from .cost import cost_per_million, parse_instance
    insts = [parse_instance(i) for i in instances]
    by = {(r["batch_size"], r["seq_length"]): r for r in records if r.get("status", "ok") == "ok"}

    def view(batch_size: int, seq_length: int) -> dict:
        r = by.get((batch_size, seq_length))
        if r is None:
            raise ValueError(f"batch {batch_size} at seq {seq_length} was not measured")
        out = {i.name: cost_per_million(i.price_per_hour, r["sequences_per_s"]) for i in insts}
        print(f"batch {batch_size}, seq {seq_length}: {r['latency_ms_p50']:.2f} ms per batch, "
              f"{r['sequences_per_s']:.1f} sequences/s on {r['device_name']}")
        for name, dollars in out.items():
            print(f"  {name:<20} ${dollars:.3f} per million requests")
        return out

    return view


def cost_slider(records: list[dict], instances):
    """``ipywidgets.interactive`` over :func:`cost_view` with batch-size and sequence-length sliders."""
    import ipywidgets as widgets
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    sizes, seqs = sorted({r["batch_size"] for r in ok}), sorted({r["seq_length"] for r in ok})
    return widgets.interactive(
        cost_view(records, instances),
        batch_size=widgets.SelectionSlider(options=sizes, value=sizes[-1], description="batch size",
                                           continuous_update=False),
        seq_length=widgets.SelectionSlider(options=seqs, value=seqs[0], description="seq length",
                                           continuous_update=False))
