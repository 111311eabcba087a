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


def test_peers_that_do_not_run_a_task_say_so(embedded):
    (st,) = P.run_peers("embedded", "SST", "sst2-dev", [8], warmup=0, repeats=1, max_rows=8,
                                   names=["sentence-transformers"], log=lambda *_: None)
    assert st["status"] == "not applicable" and "embedding task only" in st["reason"]
    assert P.peers_for(bertg4.get_task("QA")) == ["ort-longest", "ort-int8-longest"]


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
