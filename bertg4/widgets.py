"""ipywidgets sliders over pure functions (testable without a browser).

Each ``*_view`` is a pure function of the slider values that draws its figure and returns
its result; each ``*_slider`` wraps it in ``ipywidgets.interactive`` (``w.result`` is the
view's return value). ``noisy`` (True or the reason) stamps the figures "timing noise".
"""
from __future__ import annotations

import functools


def batch_size_view(records: list[dict], noisy=False):
    """A pure function ``view(batch_size) -> record`` that also draws the latency/throughput figure."""
    by_size = {r["batch_size"]: r for r in records}

    def view(batch_size: int) -> dict:
        if batch_size not in by_size:
            raise ValueError(f"batch size {batch_size} was not measured; measured: {sorted(by_size)}")
        import matplotlib.pyplot as plt
        from .plots import latency_throughput
        fig = latency_throughput(records, highlight=batch_size, noisy=noisy)
        plt.show()
        r = by_size[batch_size]
        print(f"batch {batch_size}: {r['latency_ms_p50']:.2f} ms per batch (p50), "
              f"{r['latency_ms_per_sequence']:.3f} ms per sequence, {r['sequences_per_s']:.1f} sequences/s")
        plt.close(fig)
        return r

    return view


def batch_size_slider(records: list[dict], noisy=False):
    """``ipywidgets.interactive`` over :func:`batch_size_view`; ``w.result`` is the chosen record."""
    import ipywidgets as widgets
    sizes = sorted({r["batch_size"] for r in records})
    slider = widgets.SelectionSlider(options=sizes, value=sizes[0], description="batch size",
                                     continuous_update=False)
    return widgets.interactive(batch_size_view(records, noisy), batch_size=slider)


def recipe_view(records: list[dict], baseline: str | None = None, noisy=False):
    """A pure function ``view(batch_size) -> {recipe: speedup over baseline}`` that draws
    :func:`bertg4.plots.recipe_latency` with that batch size marked and prints each speedup
    with its spread band (:func:`bertg4.plots.speedups`: medians over repeats); a speedup is
    called one only when its whole band clears 1, and never on a figure stamped noisy."""
    from .plots import _noise_text, speedups
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    names = list(dict.fromkeys(r["recipe"] for r in ok))
    baseline = baseline or names[0]
    sizes = {r["batch_size"] for r in ok if r["recipe"] == baseline}
    gains = speedups(ok, baseline)
    noise = _noise_text(noisy, ok)

    def view(batch_size: int) -> dict:
        if batch_size not in sizes:
            raise ValueError(f"batch size {batch_size} was not measured for {baseline}")
        import matplotlib.pyplot as plt
        from .plots import recipe_latency
        fig = recipe_latency(records, baseline, highlight=batch_size, noisy=noisy)
        plt.show()
        plt.close(fig)
        here = {g["recipe"]: g for g in gains if g["batch_size"] == batch_size}
        speedup = {baseline: 1.0, **{n: g["speedup"] for n, g in here.items()}}
        for n, g in here.items():
            said = ("timing noise: no claim" if noise else
                    "within the spread: no claim" if g["verdict"] == "within the spread" else g["verdict"])
            print(f"batch {batch_size}: {n:<22} {g['speedup']:5.2f}x {baseline} "
                  f"(band {g['low']:.2f}-{g['high']:.2f}, {g['iterations']} iterations): {said}")
        return speedup

    return view


def recipe_slider(records: list[dict], baseline: str | None = None, noisy=False):
    """``ipywidgets.interactive`` over :func:`recipe_view`; ``w.result`` maps recipe -> speedup."""
    import ipywidgets as widgets
    sizes = sorted({r["batch_size"] for r in records if r.get("status", "ok") == "ok"})
    slider = widgets.SelectionSlider(options=sizes, value=sizes[0], description="batch size",
                                     continuous_update=False)
    return widgets.interactive(recipe_view(records, baseline, noisy), batch_size=slider)


def cost_view(records: list[dict], instances):
    """A pure function ``view(batch_size, seq_length) -> {"measured": {instance: $ per 1M},
    "hypothetical": {instance: $ per 1M}}`` over timing records, priced at ``instances``
    (catalogue names, ``name=price`` or Instances). Measured: the instance's hardware ran the
    record (:func:`bertg4.cost.same_hardware`); hypothetical prices are printed apart."""
    from .cost import cost_table, parse_instance
    insts = [parse_instance(i) for i in instances]
    by = {(r["batch_size"], r["seq_length"]): r for r in records if r.get("status", "ok") == "ok"}

    def view(batch_size: int, seq_length: int) -> dict:
        r = by.get((batch_size, seq_length))
        if r is None:
            raise ValueError(f"batch {batch_size} at seq {seq_length} was not measured")
        rows = cost_table([r], insts)
        out = {kind: {row["instance"]: row["dollars_per_million"] for row in rows if row["kind"] == kind}
               for kind in ("measured", "hypothetical")}
        print(f"batch {batch_size}, seq {seq_length}: {r['latency_ms_p50']:.2f} ms per batch, "
              f"{r['sequences_per_s']:.1f} sequences/s, measured on {r['device_name']}")
        for kind, what in (("measured", "measured"), ("hypothetical", "hypothetical: other hardware's price")):
            for name, dollars in out[kind].items():
                print(f"  {name:<20} ${dollars:.3f} per million requests ({what})")
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


def _one_host(records: list[dict]) -> list[dict]:
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    hosts = {r.get("host") for r in ok}
    if len(hosts) != 1 or None in hosts:
        raise ValueError("the records must come from one machine that names itself (host); "
                         f"got {sorted(map(str, hosts))}")
    return ok


@functools.lru_cache(maxsize=128)
def _queue(curve_items: tuple, target_s: float, rate: float, n_requests: int, seed: int, rates: int) -> dict:
    """The price-free part of :func:`service_cost` (simulations only), cached: moving the
    price slider reruns no simulation."""
    import numpy as np
    from . import cost as K
    curve = dict(curve_items)
    (slo,) = K.slo_cost(curve, 1.0, [target_s], n_requests=n_requests, seed=seed)
    settings = [(b, f * target_s) for b in curve for f in (0.0, 0.1, 0.3)]
    sims = [K.simulate(curve, rate, b, w, n_requests, seed) for b, w in settings]
    stable = [s for s in sims if s["stable"]]
    at_rate = min(stable, key=lambda s: s["latency_s_p99"]) if stable else sims[-1]
    capacity = max(s["capacity_per_s"] for s in sims)
    points = []
    for g in np.geomspace(capacity / 100, 0.95 * capacity, rates).tolist():
        best = min((K.simulate(curve, g, b, w, n_requests, seed) for b, w in settings
                    if g < b / K.service_times(curve, b)[b]), key=lambda s: s["latency_s_p99"])
        points.append((g, 1e3 * best["latency_s_p99"]))
    return {"slo": slo, "at_rate": at_rate, "capacity": capacity, "points": tuple(points)}


def service_cost(records: list[dict], price_per_hour: float, p99_target_ms: float, rate_per_s: float,
                 n_requests: int = 5000, seed: int = 0, rates: int = 8) -> dict:
    """What this machine's measured records cost at ``price_per_hour`` (the price you pay for
    the machine that ran them): at full load (batch 128, the article's, and the cheapest
    batch), at the highest Poisson rate whose simulated p99 meets ``p99_target_ms``
    (:func:`bertg4.cost.slo_cost`), and at ``rate_per_s`` with the batching setting that
    gives the lowest p99 there (idle time paid for).

    ``records``: timing records of one engine, recipe, sequence length and device, from one
    host. Pure (fixed seed); ``curve_rates`` holds the p99 and cost over a range of rates
    for the figure (:func:`service_cost_figure`).
    """
    from . import cost as K
    ok = _one_host(records)
    inst = K.this_machine(price_per_hour, host=ok[0]["host"])
    price, target_s, rate = inst.price_per_hour, float(p99_target_ms) / 1e3, float(rate_per_s)
    if not (target_s > 0 and rate > 0):
        raise ValueError(f"p99 target and arrival rate must be positive, got {p99_target_ms!r} ms, {rate_per_s!r}/s")
    curve = K.service_curve(ok)
    points = K.batch_points(K.cost_table(ok, [inst], hypothetical=False))
    at128 = next(p for p in points if p["point"].startswith(f"batch {K.ARTICLE_BATCH_SIZE}"))
    cheapest = next(p for p in points if "cheapest" in p["point"])
    q = _queue(tuple(curve.items()), target_s, rate, int(n_requests), int(seed), int(rates))
    slo, at_rate = q["slo"], q["at_rate"]
    met = slo["max_rate_per_s"] > 0
    return {
        "measured_on": ok[0].get("device_name"), "host": inst.host, "price_per_hour": price,
        "p99_target_ms": float(p99_target_ms), "rate_per_s": rate, "samples_per_point": ok[0].get("iterations"),
        "dollars_per_million_batch128": at128["dollars_per_million"],
        "dollars_per_million_cheapest": cheapest["dollars_per_million"], "cheapest_batch": cheapest["batch_size"],
        "max_rate_per_s": slo["max_rate_per_s"],
        "dollars_per_million_at_target": K.cost_per_million(price, slo["max_rate_per_s"]) if met else None,
        "target_max_batch": slo["max_batch"], "target_max_wait_ms": 1e3 * slo["max_wait_s"],
        "stable": at_rate["stable"], "p99_ms_at_rate": 1e3 * at_rate["latency_s_p99"] if at_rate["stable"] else None,
        "meets_target": bool(at_rate["stable"] and at_rate["latency_s_p99"] <= target_s),
        "dollars_per_million_at_rate": K.cost_per_million(price, rate) if at_rate["stable"] else None,
        "max_batch": at_rate["max_batch"], "max_wait_ms": 1e3 * at_rate["max_wait_s"],
        "capacity_per_s": q["capacity"], "n_requests": int(n_requests),
        "curve_rates": [{"rate_per_s": g, "latency_ms_p99": p99, "dollars_per_million": K.cost_per_million(price, g)}
                        for g, p99 in q["points"]],
    }


def service_cost_figure(result: dict, noisy=False):
    """p99 latency and $ per 1M against the arrival rate for :func:`service_cost`'s result:
    the target, the chosen rate and the full-load costs marked; the title names the device."""
    import matplotlib.pyplot as plt
    from .plots import _noise_text, _readable_log, stamp_noise
    pts = result["curve_rates"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([p["rate_per_s"] for p in pts], [p["latency_ms_p99"] for p in pts], "o-",
             label=f"simulated p99 of {result['n_requests']} requests, best batching setting")
    ax1.axhline(result["p99_target_ms"], color="tab:red", ls=":", label="p99 target")
    ax1.set(xscale="log", yscale="log", xlabel="arrival rate (requests/s)", ylabel="p99 latency (ms)")
    ax2.plot([p["rate_per_s"] for p in pts], [p["dollars_per_million"] for p in pts], "o-", color="tab:green",
             label=f"this machine at ${result['price_per_hour']:g}/h")
    lines = [("dollars_per_million_batch128", "--", "full load, batch 128 (the article's)")]
    if result["cheapest_batch"] != 128:
        lines.append(("dollars_per_million_cheapest", ":", f"full load, cheapest batch ({result['cheapest_batch']})"))
    for key, style, what in lines:
        if result[key] is not None:
            ax2.axhline(result[key], color="grey", ls=style, lw=1, label=what)
    ax2.set(xscale="log", yscale="log", xlabel="arrival rate (requests/s)", ylabel="$ per 1M requests")
    for ax in (ax1, ax2):
        ax.axvline(result["rate_per_s"], color="tab:red", ls="--", lw=1)
        ax.grid(alpha=0.3)
        _readable_log(ax)
        _readable_log(ax, "x")
        ax.legend(fontsize=7)
    fig.suptitle(f"measured on {result['measured_on']} | this machine at ${result['price_per_hour']:g}/hour "
                 f"(your price) | p99 target {result['p99_target_ms']:.4g} ms | simulated Poisson arrivals, "
                 f"dynamic batching", fontsize=8)
    fig.tight_layout()
    reason = _noise_text(noisy, [])
    if reason:
        stamp_noise(fig, reason)
    return fig


def service_cost_view(records: list[dict], n_requests: int = 5000, seed: int = 0, noisy=False):
    """A pure function ``view(price_per_hour, p99_target_ms, rate_per_s) -> dict`` that
    reruns :func:`service_cost`, prints it and draws :func:`service_cost_figure`."""
    _one_host(records)

    def view(price_per_hour: float, p99_target_ms: float, rate_per_s: float) -> dict:
        import matplotlib.pyplot as plt
        r = service_cost(records, price_per_hour, p99_target_ms, rate_per_s, n_requests, seed)
        fig = service_cost_figure(r, noisy)
        plt.show()
        plt.close(fig)

        def usd(x):
            return "not measured" if x is None else f"${x:.4g} per 1M"
        print(f"this machine at ${r['price_per_hour']:g}/hour (your price), measured on {r['measured_on']}:")
        print(f"  full load, batch 128 (the article's): {usd(r['dollars_per_million_batch128'])}")
        print(f"  full load, cheapest batch ({r['cheapest_batch']}): {usd(r['dollars_per_million_cheapest'])}")
        met = ("no rate meets it" if r["dollars_per_million_at_target"] is None else
               f"up to {r['max_rate_per_s']:.4g} requests/s (max batch {r['target_max_batch']}, "
               f"max wait {r['target_max_wait_ms']:.3g} ms): {usd(r['dollars_per_million_at_target'])}")
        print(f"  p99 <= {r['p99_target_ms']:.4g} ms: {met}")
        if not r["stable"]:
            print(f"  at {r['rate_per_s']:.4g} requests/s: beyond this machine's capacity "
                  f"({r['capacity_per_s']:.4g} requests/s); the queue grows without bound")
        else:
            print(f"  at {r['rate_per_s']:.4g} requests/s: p99 {r['p99_ms_at_rate']:.4g} ms "
                  f"({'meets' if r['meets_target'] else 'misses'} the target; max batch {r['max_batch']}), "
                  f"{usd(r['dollars_per_million_at_rate'])}")
        return r

    return view


def service_cost_slider(records: list[dict], price_per_hour: float, p99_target_ms: float | None = None,
                        rate_per_s: float | None = None, n_requests: int = 5000, seed: int = 0, noisy=False):
    """``ipywidgets.interactive`` over :func:`service_cost_view`: a price ($/hour for this
    machine), a p99 target (ms) and an arrival rate (requests/s) slider; ``w.result`` is
    :func:`service_cost`'s dict. Defaults: target 5x the latency of one request alone, rate
    30 % of the largest measured batch's saturation throughput."""
    import math
    import ipywidgets as widgets
    from . import cost as K
    curve = K.service_curve(_one_host(records))
    alone_ms = 1e3 * curve[min(curve)]
    capacity = max(b / t for b, t in curve.items())
    p99_target_ms = 5 * alone_ms if p99_target_ms is None else float(p99_target_ms)
    rate_per_s = 0.3 * capacity if rate_per_s is None else float(rate_per_s)
    price = K.this_machine(price_per_hour).price_per_hour  # validates
    style = dict(continuous_update=False, style={"description_width": "initial"})
    return widgets.interactive(
        service_cost_view(records, n_requests, seed, noisy),
        price_per_hour=widgets.FloatSlider(value=price, min=0.01, max=max(10.0, 4 * price), step=0.01,
                                           description="$/hour (this machine)", readout_format=".2f", **style),
        p99_target_ms=widgets.FloatLogSlider(value=p99_target_ms, base=10, min=math.log10(alone_ms),
                                             max=math.log10(alone_ms * 200), step=0.05,
                                             description="p99 target (ms)", **style),
        rate_per_s=widgets.FloatLogSlider(value=rate_per_s, base=10, min=math.log10(capacity / 100),
                                          max=math.log10(capacity * 1.2), step=0.05,
                                          description="arrival rate (requests/s)", **style))
