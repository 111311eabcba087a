"""The plot primitives every notebook uses: the device in every title, spread bands drawn
from each record's per-iteration spread, p99 with its sample count, the timing-noise stamp."""
import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from bertg4 import plots  # noqa: E402

DEVICE = "Tesla T4"


def _rec(recipe, batch, p50, spread=0.05, iterations=30, device=DEVICE, engine="pt", status="ok"):
    """A bench.measure-style record: p50, min, p90, p99 around ``p50`` (ms per batch)."""
    return {"engine": engine, "recipe": recipe, "task": "SST", "model": "bert_12_768_12", "dtype": "float16",
            "device": "cuda", "device_name": device, "batch_size": batch, "seq_length": 128, "status": status,
            "iterations": iterations, "latency_ms_p50": p50, "latency_ms_mean": p50,
            "latency_ms_min": p50 * (1 - spread), "latency_ms_p90": p50 * (1 + spread),
            "latency_ms_p99": p50 * (1 + 2 * spread), "sequences_per_s": batch / p50 * 1e3}


LADDER = ([_rec("baseline", b, 10.0 * b) for b in (1, 8, 128)]
          + [_rec("fp16", b, 5.0 * b) for b in (1, 8, 128)]                 # 2x, spread 5 %: faster
          + [_rec("+interleaved", b, 9.8 * b, spread=0.3) for b in (1, 8, 128)]  # 1.02x in a 30 % spread
          + [{"engine": "pt", "recipe": "+true_fp16", "status": "not applicable", "reason": "cpu"}])


def _stamps(fig):
    return [t.get_text() for t in fig.texts if t.get_gid() == plots.NOISE_GID]


def _titles(fig):
    return " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_speedups_median_band_and_verdict():
    rows = plots.speedups(LADDER)
    assert [(r["recipe"], r["batch_size"]) for r in rows] == [
        ("fp16", 1), ("fp16", 8), ("fp16", 128), ("+interleaved", 1), ("+interleaved", 8), ("+interleaved", 128)]
    fp16 = rows[0]
    assert fp16["speedup"] == pytest.approx(2.0)
    assert fp16["low"] == pytest.approx(10 * 0.95 / (5 * 1.05))
    assert fp16["high"] == pytest.approx(10 * 1.05 / (5 * 0.95))
    assert fp16["verdict"] == "faster" and fp16["device_name"] == DEVICE
    inter = rows[3]
    assert inter["low"] < 1 < inter["high"] and inter["verdict"] == "within the spread"
    slower = plots.speedups([_rec("baseline", 1, 10.0), _rec("fp16", 1, 40.0)])
    assert slower[0]["verdict"] == "slower"
    # repeats of one point: the median of their p50s, the band over all of them
    repeats = [_rec("baseline", 1, 10.0), _rec("fp16", 1, 4.0), _rec("fp16", 1, 5.0), _rec("fp16", 1, 9.0)]
    (r,) = plots.speedups(repeats)
    assert r["speedup"] == pytest.approx(2.0) and r["repeats"] == 3
    assert r["low"] == pytest.approx(9.5 / (9.0 * 1.05))
    # another device is never the baseline of this one
    assert plots.speedups([_rec("baseline", 1, 10.0, device="cpu-x"), _rec("fp16", 1, 5.0)]) == []


def test_recipe_speedup_names_device_draws_bands_and_stamps_noise():
    fig = plots.recipe_speedup(LADDER)
    ax = fig.axes[0]
    assert f"measured on {DEVICE}" in ax.get_title() and "not applicable here: +true_fp16" in ax.get_title()
    assert [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")] == ["fp16", "+interleaved"]
    bands = _bands(ax)
    assert len(bands) == 2
    lo, hi = bands[0].get_paths()[0].vertices[:, 1].min(), bands[0].get_paths()[0].vertices[:, 1].max()
    assert lo == pytest.approx(10 * 0.95 / (5 * 1.05)) and hi == pytest.approx(10 * 1.05 / (5 * 0.95))
    assert _stamps(fig) == []
    plt.close(fig)
    fig = plots.recipe_speedup(LADDER, noisy="smoke sizes, shared 2-core CPU")
    assert _stamps(fig)[0] == "TIMING NOISE" and "shared 2-core CPU" in _stamps(fig)[1]
    plt.close(fig)
    few = [_rec("baseline", 1, 10.0, iterations=3), _rec("fp16", 1, 5.0, iterations=3)]
    fig = plots.recipe_speedup(few, noisy=True)  # True: the reason comes from the records
    assert "3 timed iterations" in _stamps(fig)[1]
    plt.close(fig)
    with pytest.raises(ValueError, match="no speedups over 'baseline'"):
        plots.recipe_speedup([_rec("fp16", 1, 5.0)])


def test_latency_figures_carry_band_p99_samples_and_device():
    rows = [r for r in LADDER if r.get("recipe") == "baseline"]
    fig = plots.latency_throughput(rows, highlight=8)
    ax1 = fig.axes[0]
    assert f"measured on {DEVICE}" in _titles(fig)
    assert len(_bands(ax1)) == 1
    band = _bands(ax1)[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(10.0 * 0.95) and band.max() == pytest.approx(1280.0 * 1.05)
    labels = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert "p99 of 30 samples (≈ their max)" in labels and "spread: fastest to p90 (30 samples)" in labels
    plt.close(fig)
    fig = plots.recipe_latency(LADDER, "baseline", highlight=8, noisy="smoke sizes")
    assert f"measured on {DEVICE}" in _titles(fig) and "not applicable here: +true_fp16" in _titles(fig)
    assert len(_bands(fig.axes[0])) == 3 and len(_bands(fig.axes[1])) == 2  # latency: 3 recipes; speedup: 2
    assert _stamps(fig)
    plt.close(fig)
    fig = plots.latency_by_seq_length(rows)
    assert f"measured on {DEVICE}" in _titles(fig) and len(_bands(fig.axes[0])) == 1 and not _stamps(fig)
    plt.close(fig)
    old = [{k: v for k, v in r.items() if k not in ("latency_ms_min", "iterations")} for r in rows]
    fig = plots.latency_throughput(old)  # records without min or iterations still draw (band p50-p90)
    assert "p99 of ? samples" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


def test_noise_reason_and_stamp():
    clean = [_rec("baseline", 1, 10.0)]
    assert plots.noise_reason(clean) is None
    assert plots.noise_reason(clean, smoke=True) == "smoke sizes"
    assert "2 timed iterations" in plots.noise_reason([_rec("baseline", 1, 10.0, iterations=2)])
    assert "p90 60 % above p50" in plots.noise_reason([_rec("baseline", 1, 10.0, spread=0.6)])
    fig, _ = plt.subplots()
    assert plots.stamp_noise(fig, "shared CPU") is fig and _stamps(fig) == ["TIMING NOISE", "shared CPU"]
    with pytest.raises(ValueError, match="reason"):
        plots.stamp_noise(fig, " ")
    plt.close(fig)
    assert plots.measured_on([{"device_name": "a"}, {"device_name": "b"}, {"device_name": "a"}]) == "measured on a; b"


def test_recipe_view_prints_speedups_with_their_band(capsys):
    from bertg4.widgets import recipe_view
    view = recipe_view(LADDER, "baseline")
    result = view(8)
    assert result == pytest.approx({"baseline": 1.0, "fp16": 2.0, "+interleaved": 10 / 9.8})
    out = capsys.readouterr().out
    assert "fp16" in out and "2.00x baseline (band 1.81-2.21, 30 iterations): faster" in out
    assert "+interleaved" in out and "within the spread: no claim" in out
    assert "timing noise: no claim" in (recipe_view(LADDER, "baseline", noisy="smoke")(8) and capsys.readouterr().out)
    with pytest.raises(ValueError, match="batch size 3 was not measured"):
        view(3)
