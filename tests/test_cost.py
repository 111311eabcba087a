"""Cost per million requests: prices, arithmetic, the batching simulator, plots."""
import math

import pytest

from bertg4 import cost as C

# Per-batch service times (s) that grow sublinearly with the batch size, as on a GPU.
SUBLINEAR = {1: 1e-3, 8: 2e-3, 32: 4e-3}


def _record(device_name, seq_per_s, batch=128, seq=128, status="ok", recipe="baseline", **extra):
    return {"engine": "pt", "recipe": recipe, "model": "bert_12_768_12", "dtype": "float16",
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
    records = [_record("Tesla T4", 730.5, device="cuda"), _record("NVIDIA H100 80GB HBM3", 8725.0, device="cuda"),
               _record("Intel Xeon", 10.0, instance="c5.xlarge", device="cpu"),
               {"engine": "pt", "recipe": "fp16", "status": "not applicable"}]
    rows = C.cost_table(records, ["g4dn.xlarge", "p5.4xlarge", "c5.xlarge@2020", "g6.xlarge=0.5"])
    assert len(rows) == 3 * 4
    by = {(r["measured_on"], r["instance"]): r for r in rows}
    t4 = by[("Tesla T4", "g4dn.xlarge")]
    assert t4["dollars_per_million"] == pytest.approx(0.2, abs=5e-4)
    assert (t4["kind"], t4["hypothetical"]) == ("measured", False)
    assert by[("Tesla T4", "p5.4xlarge")]["kind"] == "hypothetical"
    assert by[("NVIDIA H100 80GB HBM3", "p5.4xlarge")]["kind"] == "measured"
    assert by[("NVIDIA H100 80GB HBM3", "g4dn.xlarge")]["kind"] == "hypothetical"
    assert by[("Intel Xeon", "c5.xlarge@2020")]["kind"] == "measured"  # the record names its instance
    assert by[("Intel Xeon", "g6.xlarge")]["price_per_hour"] == 0.5
    assert all(r["hypothetical"] == (r["kind"] == "hypothetical") for r in rows)
    assert sum(r["kind"] == "measured" for r in rows) == 3
    only = C.cost_table(records, ["g4dn.xlarge", "p5.4xlarge", "c5.xlarge@2020"], hypothetical=False)
    assert sorted((r["measured_on"], r["instance"]) for r in only) == [
        ("Intel Xeon", "c5.xlarge@2020"), ("NVIDIA H100 80GB HBM3", "p5.4xlarge"), ("Tesla T4", "g4dn.xlarge")]
    with pytest.raises(ValueError, match="no sequences_per_s"):
        C.cost_table([{"engine": "pt", "status": "ok"}], ["g4dn.xlarge"])


@pytest.mark.parametrize("device_name, device, instance, same", [
    ("Tesla T4", "cuda", "g4dn.xlarge", True),
    ("Tesla T4", "cuda", "g4dn.xlarge@2020", True),
    ("NVIDIA L4", "cuda:0", "g6.xlarge", True),
    ("NVIDIA L40S", "cuda", "g6.xlarge", False),          # an L40S is not an L4
    ("NVIDIA A10", "cuda", "g5.xlarge", False),           # an A10 is not an A10G
    ("NVIDIA A10G", "cuda", "g5.xlarge", True),
    ("NVIDIA H100 PCIe", "cuda", "p5.4xlarge", False),    # a p5's H100 is the SXM part
    ("NVIDIA H100 NVL", "cuda", "p5.4xlarge", False),
    ("Tesla T4", "cpu", "g4dn.xlarge", False),            # a CPU record is never a GPU instance's
    ("Intel(R) Xeon(R) Platinum 8275CL CPU (4 cores)", "cpu", "c5.xlarge@2020", False),  # a CPU's name is no c5
    ("Tesla T4", "cuda", "c5.xlarge@2020", False),        # a GPU record is never priced at a CPU instance
    ("Tesla T4", "cuda", "m5.xlarge@2020", False),
])
def test_same_hardware_is_strict(device_name, device, instance, same):
    assert C.same_hardware({"device_name": device_name, "device": device}, C.instance(instance)) is same


def test_named_instance_and_this_machine():
    t4_on_g6 = {"device_name": "Tesla T4", "device": "cuda", "instance": "g6.xlarge"}
    assert not C.same_hardware(t4_on_g6, C.instance("g4dn.xlarge"))  # the record's own word wins
    assert C.same_hardware(t4_on_g6, C.instance("g6.xlarge"))
    here = C.this_machine(0.4, host="box-1")
    assert (here.name, here.price_per_hour, here.host, here.gpu) == ("this-machine", 0.4, "box-1", None)
    gpu = _record("Tesla T4", 700.0, device="cuda", host="box-1")
    cpu = _record("Intel Xeon", 20.0, device="cpu", host="box-1")  # the same machine's CPU: the same price
    other = _record("Intel Xeon", 20.0, device="cpu", host="box-2")
    rows = C.cost_table([gpu, cpu, other], [here])
    assert [r["kind"] for r in rows] == ["measured", "measured", "hypothetical"]
    assert rows[0]["dollars_per_million"] == pytest.approx(0.4 / (700.0 * 3600) * 1e6)
    import platform
    parsed = C.parse_instance("this-machine=0.25")
    assert (parsed.host, parsed.price_per_hour) == (platform.node(), 0.25)
    with pytest.raises(ValueError, match="this-machine"):
        C.parse_instance("this-machine=-1")
    with pytest.raises(ValueError, match="host"):
        C.this_machine(1.0, host="")


def test_batch_points_price_batch_128_beside_the_cheapest():
    here = C.this_machine(1.0, host="box")
    recs = [_record("Tesla T4", s, batch=b, device="cuda", host="box")
            for b, s in ((1, 100.0), (128, 700.0), (300, 750.0))]
    pts = C.batch_points(C.cost_table(recs, [here, "g4dn.xlarge"]))
    assert [(r["instance"], r["batch_size"], r["point"]) for r in pts] == [
        ("this-machine", 128, "batch 128 (the article's)"), ("this-machine", 300, "cheapest batch"),
        ("g4dn.xlarge", 128, "batch 128 (the article's)"), ("g4dn.xlarge", 300, "cheapest batch")]
    assert pts[0]["dollars_per_million"] > pts[1]["dollars_per_million"]
    one = C.batch_points(C.cost_table(recs[:2], [here]))
    assert [(r["batch_size"], r["point"]) for r in one] == [(128, "batch 128 (the article's); cheapest")]
    missing = C.batch_points(C.cost_table(recs[:1], [here]))
    assert missing[0]["dollars_per_million"] is None and missing[0]["point"].endswith("not measured (measured: 1)")
    assert missing[1]["batch_size"] == 1 and missing[1]["point"] == "cheapest batch"
    assert "| not measured |" in C.cost_markdown(missing, reference=())
    with pytest.raises(ValueError, match="reference"):
        C.batch_points(list(C.ARTICLE_REFERENCE))


def test_markdown_keeps_hypothetical_prices_in_their_own_table():
    here = C.this_machine(1.0, host="box")
    recs = [_record("Intel Xeon", 20.0, device="cpu", host="box", recipe="int8")]
    md = C.cost_markdown(C.cost_table(recs, [here, "c5.xlarge@2020"]))
    measured, rest = md.split("**Hypothetical, not measured**")
    hypothetical, reference = rest.split("**The article's figures**")
    assert "| measured | fixed shape | this-machine |" in measured and "c5.xlarge@2020" not in measured
    assert "| hypothetical | fixed shape | c5.xlarge@2020 |" in hypothetical and "this-machine" not in hypothetical
    assert reference.count("| article (reference) |") == 2 and "| 3.310 |" in reference
    none = C.cost_markdown(C.cost_table(recs, ["g4dn.xlarge"]), reference=())
    assert "None: no record here ran on the hardware" in none and "| hypothetical |" in none
    assert "The article's figures" not in none
    with pytest.raises(ValueError, match="reference"):
        C.cost_markdown([], reference=C.cost_table(recs, [here]))


def test_real_traffic_records_are_priced_beside_fixed_shapes():
    here = C.this_machine(1.0, host="box")
    fixed = _record("Tesla T4", 700.0, device="cuda", host="box")
    real = _record("Tesla T4", 2600.0, device="cuda", host="box", traffic="sst2-dev", padding="bucket",
                   sentences_per_s=2600.0, tokens_per_s=62400.0, padding_waste=1.08)
    rows = C.cost_table([fixed, real], [here])
    assert [r["workload"] for r in rows] == ["fixed shape", "real traffic"]
    assert rows[1]["dollars_per_million"] == pytest.approx(1.0 / (2600.0 * 3600) * 1e6)
    assert (rows[1]["padding"], rows[1]["tokens_per_s"], rows[1]["padding_waste"]) == ("bucket", 62400.0, 1.08)
    md = C.cost_markdown(rows, reference=())
    assert "| padding | sentences/s | tokens/s | computed / real tokens |" in md
    line = next(ln for ln in md.splitlines() if "| real traffic (sst2-dev) |" in ln and ln.startswith("| measured"))
    assert "| bucket | 2600.0 | 62400 | 1.08× |" in line
    cells = next(ln for ln in md.splitlines() if "fixed shape" in ln).split(" | ")
    assert cells[4] == "—" and cells[9:13] == ["—"] * 4  # this machine's GPU column; no traffic fields
    assert len(C.batch_points(rows)) == 2  # one group each: real traffic is never merged with fixed shapes


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
    # seq 128: g4dn.xlarge (measured on its T4) + 2 references; seq 64: g4dn.xlarge. The T4's
    # throughput at g5.xlarge's price (3 hypothetical rows) is not drawn, and the title says so.
    assert len(ax.patches) == 4
    assert sum(bool(p.get_hatch()) for p in ax.patches) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["article (reference, 2020)"]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert 0.2 in heights and 3.31 in heights
    assert round(C.cost_per_million(1.006, 730.5), 3) not in heights
    title = ax.get_title()
    assert "measured on Tesla T4" in title and "3 hypothetical prices" in title
    assert not any(t.get_gid() == plots.NOISE_GID for t in fig.texts)
    plt.close(fig)
    hyp_only = [r for r in rows if r["kind"] == "hypothetical"]
    with pytest.raises(ValueError, match="hypothetical"):
        plots.cost_per_million_bars(hyp_only)
    fig = plots.cost_per_million_bars(hyp_only + list(C.ARTICLE_REFERENCE), noisy="smoke sizes")
    assert len(fig.axes[0].patches) == 2 and "article's figures only" in fig.axes[0].get_title()
    assert any(t.get_gid() == plots.NOISE_GID and "smoke sizes" in t.get_text() for t in fig.texts)
    plt.close(fig)

    t4 = {"device_name": "Tesla T4", "device": "cuda"}
    slo = (C.slo_cost(SUBLINEAR, "g4dn.xlarge", [0.003, 0.02], settings=[(8, 0.0), (32, 0.0)], measured_on=t4)
           + C.slo_cost(SUBLINEAR, "g5.xlarge", [0.003, 0.02], settings=[(8, 0.0)], measured_on=t4))
    assert [r["hypothetical"] for r in slo] == [False, False, True, True]
    assert all(r["measured_on"] == "Tesla T4" for r in slo)
    fig = plots.cost_vs_latency_target(slo)
    measured_ax, hypothetical_ax = fig.axes  # the T4 curve at an A10G's price: a panel of its own
    assert [ln.get_label() for ln in measured_ax.get_lines()] == ["g4dn.xlarge (curve measured on Tesla T4)"]
    assert [ln.get_label() for ln in hypothetical_ax.get_lines()] == ["g5.xlarge (curve measured on Tesla T4)"]
    assert "hypothetical" in hypothetical_ax.get_title()
    lines = measured_ax.get_lines() + hypothetical_ax.get_lines()
    assert all(len(ln.get_xdata()) == 2 for ln in lines)
    assert not any(math.isnan(y) for ln in lines for y in ln.get_ydata())
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.cost_per_million_bars([])


def test_cost_at_rate_pays_for_idle_time():
    res = C.cost_at_rate(SUBLINEAR, 3.6, rate=100.0, max_batch=8, n_requests=2000)
    assert res["stable"] and res["dollars_per_million"] == pytest.approx(3.6 / (100.0 * 3600) * 1e6)
    assert res["latency_s_p99"] >= 1e-3
    assert C.cost_at_rate(SUBLINEAR, 3.6, rate=5000.0, max_batch=8, n_requests=2000)["dollars_per_million"] is None


def test_service_cost_is_a_pure_function_of_price_target_and_rate():
    import matplotlib
    matplotlib.use("Agg")
    from bertg4 import widgets as W
    recs = [{**_record("Tesla T4", b / t, batch=b, device="cuda", host="box"), "latency_ms_mean": 1e3 * t,
             "iterations": 20} for b, t in ((1, 1e-3), (8, 2e-3), (128, 16e-3))]
    r0 = W.service_cost(recs, 1.0, 5.0, 1000.0, n_requests=2000)
    assert r0 == W.service_cost(recs, 1.0, 5.0, 1000.0, n_requests=2000)
    assert r0["measured_on"] == "Tesla T4" and r0["host"] == "box"
    assert r0["dollars_per_million_batch128"] == pytest.approx(C.cost_per_million(1.0, 128 / 16e-3))
    assert r0["cheapest_batch"] == 128 and r0["meets_target"] and r0["p99_ms_at_rate"] <= 5.0
    assert r0["dollars_per_million_at_rate"] == pytest.approx(C.cost_per_million(1.0, 1000.0))
    r1 = W.service_cost(recs, 2.0, 5.0, 1000.0, n_requests=2000)
    assert r1["dollars_per_million_at_target"] == pytest.approx(2 * r0["dollars_per_million_at_target"])
    assert r1["max_rate_per_s"] == r0["max_rate_per_s"]
    loose = W.service_cost(recs, 1.0, 50.0, 1000.0, n_requests=2000)
    assert loose["max_rate_per_s"] >= r0["max_rate_per_s"]
    over = W.service_cost(recs, 1.0, 5.0, 9000.0, n_requests=2000)  # beyond 128 / 16 ms = 8000/s
    assert not over["stable"] and over["dollars_per_million_at_rate"] is None and not over["meets_target"]
    with pytest.raises(ValueError, match="one machine"):
        W.service_cost(recs + [{**recs[0], "host": "other", "batch_size": 2}], 1.0, 5.0, 100.0)
    fig = W.service_cost_figure(r0, noisy="smoke sizes")
    assert "measured on Tesla T4" in fig._suptitle.get_text()
    assert any(t.get_gid() == "timing-noise" for t in fig.texts)
