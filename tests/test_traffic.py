"""Real-traffic benchmarks: traffic sources, the whole-set timing and its records, the peers,
the side-by-side table, ``bertg4 bench --traffic`` and ``bertg4 cost`` on its records.

Sizes are small (a few dozen sentences, one timed pass): these tests check what the records
say, never how fast anything ran.
"""
import json

import numpy as np
import pytest

import bertg4
from bertg4 import peers as P, traffic as T
from bertg4.bench import measure_points, read_records
from bertg4.cli import main


@pytest.fixture(scope="module")
def pt_sst(embedded):
    return bertg4.load(task="SST", checkpoint=embedded)


@pytest.mark.parametrize("bad, what", [("sst2", "unknown traffic"), ("lognormal:23", "MEAN,P99"),
                                       ("lognormal:40,20", "P99 > MEAN"),
                                       ("lognormal:10,5000", "at most"),
                                       ("lognormal:a,b", "MEAN,P99"), (None, "unknown traffic")])
def test_bad_traffic_names_are_clear_errors(bad, what):
    with pytest.raises(ValueError, match=what):
        T.check_traffic(bad)


@pytest.mark.parametrize("argv, message", [
    (["--traffic", "sst-2"], "unknown traffic 'sst-2'"),
    (["--traffic", "sst2-dev", "--padding", "tight"], "invalid choice: 'tight'"),
    (["--padding", "longest"], "--padding and --peers apply to real traffic"),
    (["--peers"], "add --traffic"),
])
def test_bench_rejects_bad_traffic_and_padding(argv, message, capsys, tmp_path):
    try:
        code = main(["bench", "--output", str(tmp_path)] + argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_lognormal_traffic_has_the_token_counts_asked_for(embedded):
    tok = bertg4.api.tokenizer_for(embedded)
    t = T.load_traffic("lognormal:23,46,3000", tok, seed=1)
    again = T.load_traffic("lognormal:23,46,3000", tok, seed=1)
    assert t.texts == again.texts and len(t.texts) == 3000  # seeded
    batch = tok.encode_sentences(t.texts, seq_len=128)
    # every word is one vocabulary entry: the featurized lengths are exactly the sampled ones
    assert np.array_equal(batch.valid_length, np.minimum(t.lengths, 128))
    assert abs(t.lengths.mean() / 23 - 1) < 0.05
    assert abs(np.percentile(t.lengths, 99) / 46 - 1) < 0.12
    assert T.load_traffic("lognormal:23,46,3000", tok, seed=1, max_rows=10).texts == t.texts[:10]


def test_traffic_sources_fit_their_tasks(pt_sst, embedded):
    qa = bertg4.load(task="QA", checkpoint=embedded, seq_length=128)
    squad = T.load_traffic("squad-small")
    batch = T.traffic_batch(qa, squad)
    assert len(batch) >= len(squad.texts) and T.length_stats(batch)["tokens_max"] <= 128
    with pytest.raises(ValueError, match="needs squad-small"):
        T.traffic_batch(qa, T.load_traffic("sst2-dev", max_rows=5))
    with pytest.raises(ValueError, match="holds qa"):
        T.traffic_batch(pt_sst, squad)
    assert len(T.load_traffic("sst2-dev").texts) == 872


def test_traffic_records_fixed_longest_packed(pt_sst):
    tr = T.load_traffic("sst2-dev", max_rows=40)
    batch = T.traffic_batch(pt_sst, tr)
    recs = {}
    for mode in ("fixed", "longest", "packed"):
        (r,) = measure_points(pt_sst, batch, [16], warmup=0, repeats=1, traffic="sst2-dev", padding=mode)
        recs[mode] = r
    for mode, r in recs.items():
        assert r["status"] == "ok" and r["traffic"] == "sst2-dev" and r["padding"] == mode
        assert r["rows"] == 40 and r["real_tokens"] == int(batch.valid_length.sum())
        assert r["sentences_per_s"] == pytest.approx(40 / r["seconds_median"])
        assert r["tokens_per_s"] == pytest.approx(r["real_tokens"] / r["seconds_median"])
        assert r["repeats"] == 1 and r["spread"] == 0.0 and r["batch_size"] == 16
        assert r["engine"] == "pt" and r["recipe"] == "baseline" and "versions" in r
    assert recs["fixed"]["padding_waste"] == pytest.approx(40 * 128 / recs["fixed"]["real_tokens"])
    assert recs["fixed"]["padding_waste"] > recs["longest"]["padding_waste"] >= recs["packed"]["padding_waste"]
    assert recs["packed"]["padding_waste"] == 1.0


def test_a_mode_the_engine_lacks_is_recorded_not_applicable(embedded):
    p = bertg4.load(task="SST", engine="ort", checkpoint=embedded)
    batch = T.traffic_batch(p, T.load_traffic("sst2-dev", max_rows=8))
    (r,) = measure_points(p, batch, [8], warmup=0, repeats=1, traffic="sst2-dev", padding="packed")
    assert r["status"] == "not applicable" and "packed" in r["reason"]


def test_peers_compute_what_bertg4_computes_and_make_records(embedded):
    recs = P.run_peers("embedded", "embedding", "sst2-dev", [8], warmup=0, repeats=1,
                                  max_rows=24, log=lambda *_: None,
                                  names=["hf-longest", "ort-longest", "sentence-transformers"])
    assert [r["engine"] for r in recs] == ["hf-longest", "ort-longest", "sentence-transformers"]
    for r in recs:
        assert r["status"] == "ok" and r["peer"] and r["rows"] == 24 and r["traffic"] == "sst2-dev"
        assert r["sentences_per_s"] > 0 and r["padding_waste"] >= 1.0
        # same weights, same sentences: the peers' outputs are bertg4's fp32 outputs
        assert r["max_abs_vs_bertg4_fp32"] < 1e-4, r
    in_order = {r["engine"]: r for r in recs}
    # in the dataset's order batches pad more than sorted ones
    assert in_order["hf-longest"]["padding_waste"] > in_order["sentence-transformers"]["padding_waste"]
    table = T.format_traffic(recs)
    assert "× hf-longest" in table and "× sentence-transformers" in table and "1.00×" in table


def test_classification_peers_use_the_predictors_head(embedded):
    # the embedded model's SST head is the shipped probe: the peer must run it, not a random head
    (hf,) = P.run_peers("embedded", "SST", "sst2-dev", [8], warmup=0, repeats=1, max_rows=24,
                        names=["hf-longest"], log=lambda *_: None)
    assert hf["status"] == "ok" and hf["max_abs_vs_bertg4_fp32"] < 1e-4, hf
    assert hf["argmax_agreement_vs_bertg4_fp32"] == 1.0


def test_peers_that_do_not_run_a_task_say_so(embedded):
    (st,) = P.run_peers("embedded", "SST", "sst2-dev", [8], warmup=0, repeats=1, max_rows=8,
                                   names=["sentence-transformers"], log=lambda *_: None)
    assert st["status"] == "not applicable" and "embedding task only" in st["reason"]
    assert P.peers_for(bertg4.get_task("QA")) == ["ort-longest", "ort-int8-longest"]


def test_a_peer_without_onnxruntime_says_so(embedded, monkeypatch):
    import bertg4.ort
    from bertg4.ort import ORTUnavailable

    def missing(*a, **k):
        raise ORTUnavailable("engine 'ort' needs onnxruntime and onnx (test): pip install ...")
    monkeypatch.setattr(bertg4.ort, "build", missing)
    (r,) = P.run_peers("embedded", "SST", "sst2-dev", [8], warmup=0, repeats=1, max_rows=8,
                       names=["ort-longest"], log=lambda *_: None)
    assert r["status"] == "not available" and "onnxruntime" in r["reason"]


def _traffic_rec(engine, padding, seconds, peer=False, spread=0.1):
    return {"engine": engine, "recipe": "baseline", "task": "SST", "traffic": "sst2-dev", "batch_size": 32,
            "padding": padding, "status": "ok", "peer": peer, "rows": 100, "real_tokens": 2300,
            "padding_waste": 1.0 if padding == "packed" else 1.2, "seconds_median": seconds,
            "seconds_min": seconds / (1 + spread / 2), "seconds_max": seconds * (1 + spread / 2),
            "spread": spread, "sentences_per_s": 100 / seconds, "repeats": 3, "device_name": "Test CPU"}


def test_traffic_ratios_take_the_fastest_mode_and_state_only_what_the_spread_allows():
    recs = [_traffic_rec("pt", "longest", 1.0), _traffic_rec("pt", "packed", 0.5),
            _traffic_rec("hf-longest", "longest (in order)", 1.0, peer=True),
            _traffic_rec("ort-longest", "longest (in order)", 0.52, peer=True, spread=0.3),
            {"engine": "ort-int8-longest", "status": "not available", "reason": "no onnxruntime", "peer": True}]
    by = {g["peer"]: g for g in T.traffic_ratios(recs)}
    assert set(by) == {"hf-longest", "ort-longest"}
    assert by["hf-longest"]["padding"] == "packed" and by["hf-longest"]["ratio"] == pytest.approx(2.0)
    assert by["hf-longest"]["verdict"] == "faster" and by["hf-longest"]["low"] > 1
    assert by["ort-longest"]["verdict"] == "within the spread"
    assert by["ort-longest"]["low"] < by["ort-longest"]["ratio"] < by["ort-longest"]["high"]


def test_traffic_figure_draws_histogram_bars_device_and_noise():
    import matplotlib
    matplotlib.use("Agg")
    from bertg4 import plots
    recs = [_traffic_rec("pt", "fixed", 4.0), _traffic_rec("pt", "packed", 0.5),
            _traffic_rec("hf-longest", "longest (in order)", 1.0, peer=True)]
    fig = plots.traffic_throughput(recs, np.array([5, 9, 22, 23, 40]), seq_length=128, noisy="smoke sizes")
    hist, bars = fig.axes
    assert "5 requests" in hist.get_title() and "computes 128" in hist.get_title()
    assert [t.get_text() for t in bars.get_yticklabels()] == [
        "bertg4 pt baseline, fixed", "hf-longest (longest (in order))", "bertg4 pt baseline, packed"]
    assert "Test CPU" in bars.get_title() and any("smoke sizes" in t.get_text() for t in fig.texts)
    with pytest.raises(ValueError, match="one traffic source and batch size"):
        plots.traffic_throughput(recs + [{**recs[0], "batch_size": 8}])
    with pytest.raises(ValueError, match="no measured"):
        plots.traffic_throughput([{"status": "not available"}])


def test_bench_traffic_cli_writes_records_beside_fixed_shapes_and_cost_prices_both(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--model", "embedded", "--quick", "--batch-sizes", "2", "--output", str(out),
                 "--no-progress"]) == 0
    assert main(["bench", "--model", "embedded", "--traffic", "sst2-dev", "--max-rows", "16",
                 "--padding", "fixed", "--padding", "longest", "--batch-sizes", "8", "--repeats", "1",
                 "--output", str(out)]) == 0
    recs = read_records(str(out / "records.jsonl"))
    fixed_shape = [r for r in recs if not r.get("traffic")]
    traffic = [r for r in recs if r.get("traffic")]
    assert len(fixed_shape) == 1 and [r["padding"] for r in traffic] == ["fixed", "longest"]
    assert (out / "traffic.md").read_text().count("| pt | baseline |") == 2
    capsys.readouterr()
    assert main(["cost", str(out / "records.jsonl"), "--instance", "this-machine=1.0",
                 "--output", str(tmp_path / "c")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "c" / "cost.jsonl").read_text().splitlines()]
    assert {r["workload"] for r in rows} == {"fixed shape", "real traffic"}
    assert "real traffic" in capsys.readouterr().out
    # the report reads a file holding both kinds of records
    assert main(["report", str(out / "records.jsonl"), "--output", str(tmp_path / "r")]) == 0
    assert "Real traffic" in (tmp_path / "r" / "report.md").read_text()
