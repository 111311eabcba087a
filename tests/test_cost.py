"""Cost per million requests: prices, arithmetic, the batching simulator, plots."""
import math

import pytest

from bertg4 import cost as C

# Per-batch service times (s) that grow sublinearly with the batch size, as on a GPU.
SUBLINEAR = {1: 1e-3, 8: 2e-3, 32: 4e-3}


def _record(device_name, seq_per_s, batch=128, seq=128, status="ok", **extra):
    return {"engine": "pt", "recipe": "baseline", "model": "bert_12_768_12", "dtype": "float16",
            "device_name": device_name, "batch_size": batch, "seq_length": seq,
            "sequences_per_s": seq_per_s, "latency_ms_mean": batch / seq_per_s * 1e3,
            "status": status, **extra}


# --- arithmetic and catalogue ----------------------------------------------------------

def test_cost_per_million_exact_and_article_figure():
    assert C.cost_per_million(3.6, 1.0) == pytest.approx(1000.0)  # $1e-3 per sequence
    assert C.cost_per_million(0.36, 100.0) == pytest.approx(1.0)
    assert C.cost_per_million(0.526, 730.5) == pytest.approx(0.2, abs=5e-4)  # the article's 20 cents
    for bad in [(0, 1), (-1, 1), (1, 0), (1, -5), (1, float("nan")), ("x", 1)]:
        with pytest.raises(ValueError):
            C.cost_per_million(*bad)


def test_catalogue_and_lookup_errors():
    old, new = C.instance("g4dn.xlarge@2020"), C.instance("g4dn.xlarge")
    assert old.price_per_hour == new.price_per_hour == 0.526
    assert old.date == "2020" and "20 cents" in old.source and "2025" in new.source
    assert old.instance_type == new.instance_type == "g4dn.xlarge"
    assert C.instance("c5.xlarge@2020").gpu is None and C.instance("c5.24xlarge@2020").price_per_hour == 4.08
    assert C.instance("g6.xlarge").gpu == "NVIDIA L4" and "check" in C.instance("p5.4xlarge").source
    with pytest.raises(KeyError, match="g5.xlarge") as e:  # the message lists the known names
        C.instance("g9.mega")
    assert "g9.mega" in str(e.value)
    with pytest.raises(Exception):
        C.instance("g4dn.xlarge").price_per_hour = 0.1  # frozen


def test_user_prices():
    spot = C.parse_instance("g5.xlarge=0.45")
    assert (spot.price_per_hour, spot.gpu, spot.source) == (0.45, "NVIDIA A10G", "user-supplied price")
    assert C.parse_instance("g4dn.xlarge") is C.CATALOGUE["g4dn.xlarge"]
    assert C.custom_instance("onprem", 2.5, gpu="NVIDIA T4").gpu == "NVIDIA T4"
    for spec, bad in [("g5.xlarge=abc", "'abc'"), ("g5.xlarge=-1", "'-1'"), ("g5.xlarge=0", "'0'"),
                      ("g5.xlarge=", "''"), ("g5.xlarge=inf", "'inf'")]:
        with pytest.raises(ValueError, match=bad):
            C.parse_instance(spec)
    with pytest.raises(ValueError, match="no name"):
        C.parse_instance("=0.5")
    with pytest.raises(KeyError, match="unknown instance"):
        C.parse_instance("nope")


def test_cost_table_flags_hardware_and_skips_failed_records():
    records = [_record("Tesla T4", 730.5), _record("NVIDIA H100 80GB HBM3", 8725.0),
               _record("Intel Xeon", 10.0, instance="c5.xlarge"),
               {"engine": "pt", "recipe": "fp16", "status": "not applicable"}]
    rows = C.cost_table(records, ["g4dn.xlarge", "p5.4xlarge", "c5.xlarge@2020", "g6.xlarge=0.5"])
    assert len(rows) == 3 * 4
    by = {(r["measured_on"], r["instance"]): r for r in rows}
    t4 = by[("Tesla T4", "g4dn.xlarge")]
    assert t4["dollars_per_million"] == pytest.approx(0.2, abs=5e-4) and not t4["hypothetical"]
    assert by[("Tesla T4", "p5.4xlarge")]["hypothetical"]
    assert not by[("NVIDIA H100 80GB HBM3", "p5.4xlarge")]["hypothetical"]
    assert by[("NVIDIA H100 80GB HBM3", "g4dn.xlarge")]["hypothetical"]
    assert not by[("Intel Xeon", "c5.xlarge@2020")]["hypothetical"]  # the record names its instance
    assert by[("Intel Xeon", "g6.xlarge")]["price_per_hour"] == 0.5
    assert all(r["kind"] == "measured" for r in rows)
    with pytest.raises(ValueError, match="no sequences_per_s"):
        C.cost_table([{"engine": "pt", "status": "ok"}], ["g4dn.xlarge"])


def test_reference_rows_are_labelled_and_kept_apart():
    assert {(r["instance"], r["dollars_per_million"]) for r in C.ARTICLE_REFERENCE} == {
        ("g4dn.xlarge@2020", 0.20), ("c5.xlarge@2020", 3.31)}
    assert all(r["kind"] == "reference" and r["source"] == C.ARTICLE_SOURCE for r in C.ARTICLE_REFERENCE)
    rows = C.cost_table([_record("Tesla T4", 730.5)], ["g4dn.xlarge"])
    table = C.cost_markdown(rows)
    lines = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + 1 + 2  # header, one measured row, two reference rows
    assert lines[1].startswith("| measured | g4dn.xlarge |") and "0.200" in lines[1]
    assert all(ln.startswith("| article (reference) |") for ln in lines[2:])
    assert "3.310" in table and C.ARTICLE_SOURCE in table
    hyp = C.cost_markdown(C.cost_table([_record("Intel Xeon", 20.0)], ["g4dn.xlarge"]), reference=())
    assert "hypothetical" in hyp
    with pytest.raises(ValueError, match="reference rows"):
        C.cost_markdown(list(C.ARTICLE_REFERENCE))


# --- latency curve and simulator -------------------------------------------------------

def test_service_times_interpolate_and_refuse_extrapolation():
    s = C.service_times({2: 2e-3, 10: 6e-3}, 10)
    assert s[1] == pytest.approx(2e-3)  # below the smallest size: padded up
    assert s[6] == pytest.approx(4e-3) and s[10] == pytest.approx(6e-3)
    assert len(C.service_times({2: 2e-3, 10: 6e-3}, 4)) == 5
    with pytest.raises(ValueError, match="largest measured batch size 10"):
        C.service_times({2: 2e-3, 10: 6e-3}, 11)
    for bad in [{}, {0: 1e-3}, {1: -1e-3}, {1.5: 1e-3}]:
        with pytest.raises(ValueError):
            C.service_times(bad, 1)


def test_service_curve_from_records():
    recs = [_record("Tesla T4", 100.0, batch=1), _record("Tesla T4", 800.0, batch=8),
            _record("Tesla T4", 1.0, batch=32, status="skipped: time budget")]
    assert C.service_curve(recs) == pytest.approx({1: 0.01, 8: 0.01})
    with pytest.raises(ValueError, match="mix several"):
        C.service_curve(recs + [_record("NVIDIA L4", 100.0, batch=16)])


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_simulator_matches_md1_closed_form(rho):
    d = 0.01  # constant service time; max_batch=1 makes the queue M/D/1
    sim = C.simulate({1: d}, rate=rho / d, max_batch=1, n_requests=300_000, seed=1)
    expected = rho * d / (2 * (1 - rho)) + d
    assert sim["latency_s_mean"] == pytest.approx(expected, rel=0.03)
    assert sim["utilization"] == pytest.approx(rho, rel=0.02)
    assert sim["throughput_per_s"] == pytest.approx(rho / d, rel=0.02)
    assert sim["mean_batch_size"] == 1.0 and sim["stable"]
    assert sim["latency_s_p50"] <= sim["latency_s_p90"] <= sim["latency_s_p99"]


def test_simulator_batching_rules():
    # At a low rate with a wait window each request waits the window, then runs alone.
    sim = C.simulate(SUBLINEAR, rate=1.0, max_batch=8, max_wait_s=0.005, n_requests=2000)
    assert sim["latency_s_p50"] == pytest.approx(0.005 + 1e-3, rel=1e-6)
    # Under heavy load batches fill to max_batch; beyond saturation the queue is unstable.
    heavy = C.simulate(SUBLINEAR, rate=3900.0, max_batch=8, n_requests=20_000)
    assert heavy["mean_batch_size"] > 7 and heavy["stable"]
    assert not C.simulate(SUBLINEAR, rate=4000.0, max_batch=8, n_requests=2000)["stable"]
    with pytest.raises(ValueError, match="rate"):
        C.simulate(SUBLINEAR, rate=0.0, max_batch=8)


def test_larger_batches_sustain_higher_rate():
    r1 = C.max_rate_for_slo(SUBLINEAR, 0.02, max_batch=1)["max_rate_per_s"]
    r32 = C.max_rate_for_slo(SUBLINEAR, 0.02, max_batch=32)["max_rate_per_s"]
    assert 0 < r1 < 1000  # one request per ms at most without batching
    assert r32 > 4 * r1


def test_max_rate_monotone_in_target_and_zero_when_impossible():
    rates = [C.max_rate_for_slo(SUBLINEAR, t, max_batch=8, max_wait_s=1e-3)["max_rate_per_s"]
             for t in (0.0025, 0.004, 0.008, 0.03)]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    assert all(r < 8 / 2e-3 for r in rates)  # below saturation
    res = C.max_rate_for_slo(SUBLINEAR, 0.003, max_batch=8, max_wait_s=1e-3)
    assert res["sim"]["latency_s_p99"] <= 0.003
    assert C.max_rate_for_slo(SUBLINEAR, 0.5e-3, max_batch=1)["max_rate_per_s"] == 0.0
    # Saturation (8 / 2 ms = 4000/s) is unstable: it fails even when a finite run looks fine.
    loose = C.max_rate_for_slo(SUBLINEAR, 10.0, max_batch=8, max_utilization=1.0)["max_rate_per_s"]
    assert 0.95 * 4000 < loose < 4000
    with pytest.raises(ValueError, match="max_utilization"):
        C.max_rate_for_slo(SUBLINEAR, 0.01, max_batch=8, max_utilization=1.5)


def test_slo_cost_picks_best_setting():
    rows = C.slo_cost(SUBLINEAR, "g4dn.xlarge", [0.003, 0.02, 1e-4])
    assert [r["p99_target_s"] for r in rows] == [0.003, 0.02, 1e-4]
    tight, loose, impossible = rows
    assert loose["max_rate_per_s"] >= tight["max_rate_per_s"] > 0
    assert loose["dollars_per_million"] == pytest.approx(
        C.cost_per_million(0.526, loose["max_rate_per_s"]))
    assert loose["dollars_per_million"] >= loose["dollars_per_million_no_slo"]
    assert loose["max_batch"] == 32 and tight["settings_tried"] == 9
    assert impossible["dollars_per_million"] is None
    one = C.slo_cost(SUBLINEAR, 1.0, [0.02], settings=[(1, 0.0)], label="mine")
    assert one[0]["instance"] == "mine" and one[0]["max_batch"] == 1
    assert one[0]["max_rate_per_s"] < loose["max_rate_per_s"]
    with pytest.raises(ValueError, match="targets"):
        C.slo_cost(SUBLINEAR, 1.0, [0.0])


# --- plots -----------------------------------------------------------------------------

def test_plots_return_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bertg4 import plots

    rows = C.cost_table([_record("Tesla T4", 730.5), _record("Tesla T4", 400.0, batch=8),
                         _record("Tesla T4", 1500.0, seq=64)], ["g4dn.xlarge", "g5.xlarge"])
    fig = plots.cost_per_million_bars(rows + list(C.ARTICLE_REFERENCE))
    ax = fig.axes[0]
    # seq 128: 2 measured instances + 2 references; seq 64: 2 measured instances
    assert len(ax.patches) == 6
    assert sum(bool(p.get_hatch()) for p in ax.patches) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["article (reference)"]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert 0.2 in heights and 3.31 in heights
    plt.close(fig)

    slo = (C.slo_cost(SUBLINEAR, "g4dn.xlarge", [0.003, 0.02], settings=[(8, 0.0), (32, 0.0)])
           + C.slo_cost(SUBLINEAR, "g5.xlarge", [0.003, 0.02], settings=[(8, 0.0)]))
    fig = plots.cost_vs_latency_target(slo)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["g4dn.xlarge", "g5.xlarge"]
    assert all(len(ln.get_xdata()) == 2 for ln in lines)
    assert not any(math.isnan(y) for ln in lines for y in ln.get_ydata())
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.cost_per_million_bars([])
