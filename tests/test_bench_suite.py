"""`bertg4 bench`: the ladder suite and recipe sweeps at tiny sizes on the CPU.

These run the same code as the GPU suite; they check records, not speed."""
import json

import pytest

from bertg4 import cli
from bertg4.checkpoint import load_checkpoint
from bertg4.recipe import ladder
from bertg4.suite import format_suite, run_suite, speedups


@pytest.fixture(scope="module")
def suite_records():
    ckpt = load_checkpoint("random:minilm_6_384_12")
    return run_suite("cpu", log=lambda *_: None, model=ckpt, batch_sizes=(1, 2), seq_length=16,
                     iters=1, warmup=0, max_seconds=1.0, check_rows=4, numerics_rows=6)


def test_suite_covers_every_rung(suite_records):
    by = {}
    for r in suite_records:
        if r.get("kind") != "numerics":
            by.setdefault(r["recipe"], []).append(r)
    for rung in ladder():
        assert rung.name in by, rung.name
    # on a CPU the GPU-only switches are recorded as not applicable, with the reason
    for name in ("+true_fp16", "+graph_pass", "all"):
        (na,) = by[name]
        assert na["status"] == "not applicable" and "CUDA" in na["reason"]
    for name in ("baseline", "fp16", "+safe_accumulation", "+interleaved", "interleaved-fp32",
                 "graph-pass-fp32", "hf sdpa (float32)"):
        rows = by[name]
        assert sorted(r["batch_size"] for r in rows) == [1, 2]
        for r in rows:
            assert r["status"] == "ok" and r["latency_ms_p50"] > 0 and r["seq_length"] == 16
            assert r["finite"] and r["argmax_agreement_vs_fp32"] >= 0.5
    assert by["baseline"][0]["max_abs_vs_fp32"] == 0.0
    # fp32 rungs equal the baseline to fp32 rounding; fp16 rungs do not, but stay close
    for name in ("interleaved-fp32", "graph-pass-fp32", "hf sdpa (float32)"):
        assert by[name][0]["max_abs_vs_fp32"] < 1e-4, name
    assert 1e-5 < by["fp16"][0]["rel_err_vs_fp32"] < 2e-2
    assert by["graph-pass-fp32"][0]["graph_pass"]["bias_gelu_fused"] == 6


def test_suite_checks_every_cpu_rung_on_the_embedded_model(suite_records):
    numerics = {r["recipe"]: r for r in suite_records if r.get("kind") == "numerics"}
    assert list(numerics) == ["baseline", "fp16", "+safe_accumulation", "+interleaved"]
    assert all(r["examples"] == 6 and r["finite"] for r in numerics.values())
    assert numerics["baseline"]["rel_err_vs_fp32"] == 0.0
    assert 0 < numerics["+safe_accumulation"]["rel_err_vs_fp32"] < 1e-2
    assert numerics["+interleaved"]["min_cosine_vs_fp32"] > 0.999


def test_suite_table_and_speedups(suite_records):
    table = format_suite(suite_records)
    assert "| +true_fp16 | n/a |" in table and "| graph-pass-fp32 |" in table
    assert "| MiniLM rung |" in table
    s = speedups(suite_records, "interleaved-fp32", "baseline")
    assert sorted(s) == [1, 2] and all(v > 0 for v in s.values())
    assert speedups(suite_records, "all", "baseline") == {}  # not applicable here: no ratio


def test_bench_cli_writes_records_and_not_applicable_rows(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--model", "random:minilm_6_384_12", "--recipe", "baseline", "--recipe",
            "graph-pass-fp32", "--recipe", "+true_fp16", "--seq-length", "16", "--iters", "1",
            "--warmup", "0", "--no-progress", "--output", str(out)]
    assert cli.main(args + ["--batch-sizes", "1,3"]) == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    ok = [(r["recipe"], r["batch_size"]) for r in rows if r["status"] == "ok"]
    assert sorted(ok) == [("baseline", 1), ("baseline", 3), ("graph-pass-fp32", 1),
                          ("graph-pass-fp32", 3)]
    na = [r for r in rows if r["status"] != "ok"]
    assert [(r["recipe"], r["batch_size"], r["status"]) for r in na] == [
        ("+true_fp16", 1, "not applicable"), ("+true_fp16", 3, "not applicable")]
    assert "needs a CUDA GPU" in na[0]["reason"]
    assert all(r["seq_length"] == 16 and r["device"] == "cpu" for r in rows)
    assert "graph-pass-fp32" in (out / "table.md").read_text()
    assert (out / "speedup_pt_SST_16.png").stat().st_size > 1000

    # run again with one more batch size: only the new points are measured
    assert cli.main(args + ["--batch-sizes", "1,3,2"]) == 0
    again = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert again[:len(rows)] == rows and len(again) == len(rows) + 3
    assert sorted((r["recipe"], r["batch_size"]) for r in again[len(rows):]) == [
        ("+true_fp16", 2), ("baseline", 2), ("graph-pass-fp32", 2)]
    assert "resuming: 6 of 9 points" in capsys.readouterr().out


def test_bench_quick_sweep_over_tasks_and_engines_and_report(tmp_path):
    out = tmp_path / "quick"
    assert cli.main(["bench", "--quick", "--model", "random:minilm_6_384_12", "--task", "SST",
                     "--task", "QA", "--engine", "pt", "--engine", "hf", "--recipe", "sdpa-fp32",
                     "--no-progress", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {(r["engine"], r["task"], r["batch_size"]) for r in rows} == {
        (e, t, b) for e in ("pt", "hf") for t in ("SST", "QA") for b in (1, 2)}
    # --quick times 2 batches within a time budget: fewer when a batch outlasts it on a busy machine
    assert all(r["status"] == "ok" and r["seq_length"] == 16 and r["iterations"] in (1, 2) for r in rows)
    assert all(r["tflops_achieved"] > 0 and r["versions"]["torch"] and r["command"] for r in rows)
    report = tmp_path / "report"
    assert cli.main(["report", str(out / "records.jsonl"), "--output", str(report)]) == 0
    assert "| batch | ms/batch mean |" in (report / "report.md").read_text()
    assert (report / "latency_pt_sdpa-fp32_QA.png").stat().st_size > 1000
    assert (report / "speedup_pt_SST_16.png").exists() is False  # one recipe: no speedup figure


def test_bench_cli_rejects_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--recipe", "fastest"])
    assert "invalid choice: 'fastest'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--batch-sizes", "1,0", "--output", str(tmp_path)])
    assert "positive integer" in capsys.readouterr().err


def test_side_by_side_table_gives_speedups_over_the_reference():
    from bertg4.sweep import format_comparison
    rows = [dict(engine=e, recipe=rc, task="SST", seq_length=128, batch_size=b, latency_ms_mean=ms,
                 status="ok") for e, rc, b, ms in [("pt", "baseline", 1, 100.0), ("hf", "sdpa-fp32", 1, 150.0),
                                                   ("mx", "int8", 1, 50.0), ("pt", "baseline", 8, 400.0)]]
    table = format_comparison(rows)
    assert "speedup over hf sdpa-fp32" in table
    assert "| SST | 128 | 1 | 100.0 (1.50×) | 150.0 (1.00×) | 50.0 (3.00×) |" in table
    assert "| SST | 128 | 8 | 400.0 | – | – |" in table  # no reference measured at batch 8
    assert "pt baseline" in format_comparison(rows, reference=("pt", "baseline"))
    with pytest.raises(ValueError, match="reference"):
        format_comparison(rows, reference=("hf", "bf16"))


def test_median_ms_times_each_call_after_the_warm_up():
    from bertg4.bench import median_ms
    calls = []
    ms = median_ms(lambda: calls.append(1), n=7, warmup=3)
    assert len(calls) == 10 and 0 <= ms < 1e3


def test_rounds_alternate_the_engines_and_the_table_takes_each_rounds_own_speedup():
    from bertg4.sweep import format_comparison, median_rounds, plan
    order = [(p.round, p.engine) for p in plan(["pt", "ort"], ["baseline"], ["SST"], [128], [1], rounds=3)]
    assert order == [(0, "pt"), (0, "ort"), (1, "ort"), (1, "pt"), (2, "pt"), (2, "ort")]
    with pytest.raises(ValueError, match="rounds"):
        plan(["pt"], ["baseline"], ["SST"], [128], [1], rounds=0)
    # the machine slows down between rounds; within each round pt is 1.25x, 1.10x, 1.20x ort
    ms = {0: (80.0, 100.0), 1: (200.0, 220.0), 2: (100.0, 120.0)}
    rows = [dict(engine=e, recipe="int8", task="SST", seq_length=128, batch_size=1, round=n,
                 latency_ms_mean=ms[n][i], status="ok") for n in ms for i, e in enumerate(("pt", "ort"))]
    table = format_comparison(rows, reference=("ort", "int8"))
    assert "over 3 rounds" in table
    # medians of ms: pt 100, ort 120; speedups within rounds: median 1.20, range 1.10-1.25
    assert "| SST | 128 | 1 | 100.0 (1.20× [1.10-1.25]) | 120.0 (1.00× [1.00-1.00]) |" in table
    kept = median_rounds(rows + [dict(engine="pt", recipe="x", status="not applicable")])
    assert sorted((r["engine"], r.get("round", -1)) for r in kept) == [("ort", 2), ("pt", -1), ("pt", 2)]
    # the same point from two runs of one round each (two files given to `bertg4 report`): both stay
    other = [dict(r, round=0) for r in rows if r["round"] == 1]
    assert len(median_rounds([r for r in rows if r["round"] == 0] + other)) == 4


def test_bench_cli_rounds_measure_each_point_once_a_round_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "rounds"
    args = ["bench", "--model", "random:minilm_6_384_12", "--recipe", "baseline", "--recipe",
            "graph-pass-fp32", "--seq-length", "16", "--batch-sizes", "1", "--iters", "1", "--warmup", "0",
            "--rounds", "2", "--no-progress", "--output", str(out)]
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["recipe"], r["round"], r["status"]) for r in rows) == [
        ("baseline", 0, "ok"), ("baseline", 1, "ok"), ("graph-pass-fp32", 0, "ok"), ("graph-pass-fp32", 1, "ok")]
    printed = capsys.readouterr().out
    assert "round 1 of 2: measured in its own process" in printed and "over 2 rounds" in printed
    assert "| 1 | 2 |" in (out / "table.md").read_text()  # batch 1, round 2
    assert cli.main(args) == 0  # everything measured: nothing runs again
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    assert "resuming: 4 of 4 points" in capsys.readouterr().out
    assert cli.main(["bench", "--rounds", "2", "--traffic", "sst2-dev", "--output", str(tmp_path / "t")]) == 2
    assert "--rounds repeats the fixed-shape sweep" in capsys.readouterr().err
