"""`bertg4 accuracy --task QA`: one row per engine and rung with SQuAD EM/F1, agreement of the
answers with the fp32 baseline and ΔF1; rungs that cannot run and engines that cannot load
are rows that say why."""
import json

import pytest

import bertg4
from bertg4 import accuracy as A
from bertg4 import cli
from bertg4 import data as D
from bertg4.checkpoint import add_head, load_checkpoint
from bertg4.finetune import save_checkpoint
from bertg4.tasks import squad_scores

SEQ = 96  # most squad_small dev passages need two windows at this length


@pytest.fixture(scope="module")
def qa_model(tmp_path_factory):
    """The embedded MiniLM with a (seeded, untrained) span head, written as a QA checkpoint:
    agreement between rungs does not need a good model."""
    out = tmp_path_factory.mktemp("qa_ckpt")
    ckpt = load_checkpoint("embedded")
    add_head(ckpt, "qa_outputs", seed=3)
    return save_checkpoint(ckpt, str(out))


@pytest.fixture(scope="module")
def qa_rows(qa_model):
    return A.rung_accuracy(qa_model, "QA", "cpu", engines=("pt", "hf", "mx"), data=D.squad_small("dev"),
                           recipes=["baseline", "fp16", "interleaved-fp32", "+true_fp16"], seq_length=SEQ,
                           log=lambda *_: None)


def test_rows_and_baseline(qa_model, qa_rows):
    by = {(r["engine"], r["recipe"]): r for r in qa_rows}
    assert len(by) == len(qa_rows)
    assert list(by)[0] == ("pt", "baseline")  # the reference always comes first
    assert set(by) == {("pt", "baseline")} | {(e, r) for e in ("pt", "hf", "mx")
                                               for r in ("baseline", "fp16", "interleaved-fp32", "+true_fp16")}
    base = by[("pt", "baseline")]
    assert base["agreement_vs_fp32"] == 1.0 and base["delta_f1_vs_fp32"] == 0.0 and base["meets_target"]
    assert base["examples"] == 25 and base["windows"] > 25
    # the baseline's scores are those of the predictor's own answers
    p = bertg4.load(qa_model, task="QA", seq_length=SEQ)
    dev = D.squad_small("dev")
    scores = squad_scores([a["text"] for a in p.predict(list(zip(dev.questions, dev.contexts)))], dev)
    assert (base["exact_match"], base["f1"]) == (scores["exact_match"], scores["f1"])
    assert by[("pt", "+true_fp16")]["status"] == "not applicable"
    for key in (("pt", "interleaved-fp32"), ("hf", "baseline")):
        r = by[key]
        assert r["agreement_vs_fp32"] == 1.0 and r["delta_f1_vs_fp32"] == 0.0, key
        assert r["max_abs_logit_diff"] < 1e-4 and not r["differing_answers"], key
    fp16 = by[("pt", "fp16")]
    assert fp16["finite"] and 0 < fp16["max_abs_logit_diff"] < 0.05
    assert fp16["disagreements"] == len(fp16["differing_answers"])
    for r in qa_rows:
        assert r["status"] in ("ok", "not applicable", "not available"), r
        if r["status"] != "ok":
            assert r["reason"]


def test_table(qa_rows):
    table = A.format_accuracy(qa_rows)
    lines = table.splitlines()
    assert lines[0].startswith("| engine | recipe | dtype | EM | F1 | ΔF1 vs fp32 | same answer as fp32 |")
    body = [line for line in lines[2:] if line.startswith("| ")]
    assert len(body) == len(qa_rows)
    assert body[0].startswith("| pt | baseline | float32 |") and "| +0.00 | 100.00 % | 0 |" in body[0]
    assert "| pt | +true_fp16 | float16 | n/a |" in table
    assert "- pt +true_fp16: not applicable: " in table


def test_an_engine_that_cannot_load_is_a_row(qa_model, monkeypatch):
    real = A.load

    def load(*args, engine, **kw):
        if engine == "hf":
            raise ImportError("No module named 'transformers'")
        return real(*args, engine=engine, **kw)

    monkeypatch.setattr(A, "load", load)
    rows = A.rung_accuracy(qa_model, "QA", engines=("pt", "hf"), recipes=["baseline"],
                           data=D.squad_small("dev"), seq_length=SEQ, log=lambda *_: None)
    assert [(r["engine"], r["status"]) for r in rows] == [("pt", "ok"), ("hf", "not available")]
    assert rows[1]["reason"] == "engine hf: ImportError: No module named 'transformers'"


def test_cli_accuracy_qa(qa_model, tmp_path):
    out = tmp_path / "acc"
    code = cli.main(["accuracy", "--task", "QA", "--model", qa_model, "--data", f"{D.SQUAD_SMALL}/dev.json",
                     "--engine", "pt", "--recipe", "interleaved-fp32", "--seq-length", str(SEQ),
                     "--output", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["engine"], r["recipe"], r["task"]) for r in rows] == [("pt", "baseline", "QA"),
                                                                     ("pt", "interleaved-fp32", "QA")]
    assert "| pt | interleaved-fp32 | float32 |" in (out / "table.md").read_text()


def test_qa_accuracy_needs_a_span_head(capsys, tmp_path):
    with pytest.raises(ValueError, match="no qa_outputs head"):
        A.rung_accuracy("embedded", "QA", data=D.squad_small("dev"))
    assert cli.main(["accuracy", "--task", "QA", "--model", "embedded", "--data",
                     str(tmp_path / "nothing.json"), "--output", str(tmp_path)]) == 2
    assert "nothing.json" in capsys.readouterr().err
