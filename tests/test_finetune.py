"""`bertg4 finetune`: training really learns, the written checkpoint is the trained model,
and bad arguments are refused. (The documented CPU schedule's accuracy is a recorded run,
see README, not a test.)"""
import json

import numpy as np
import pytest
import torch

import bertg4
from bertg4 import cli
from bertg4 import data as D
from bertg4.checkpoint import add_head, random_weights
from bertg4.config import BertConfig
from bertg4.finetune import finetune
from bertg4.pt import graph_pass
from bertg4.pt.model import ForClassification, ForQuestionAnswering, load_weights

SMALL = BertConfig(2, 64, 4, 128, 100, 64, name="small")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    sample = D.sample_sst()
    # memorise the 32 labelled sample sentences: gradients must flow through the whole model
    summary = finetune("embedded", "SST", "tiny", output=str(out), train=sample, dev=sample,
                       progress=False, log=lambda *_: None, epochs=10, lr=2e-4, batch_size=8)
    return out, summary, sample


def test_training_learns(tiny_run):
    out, summary, sample = tiny_run
    assert summary["steps"] == 40 and summary["train_sentences"] == 32
    assert summary["dev_accuracy"] >= 0.9
    rows = [json.loads(line) for line in (out / "finetune_log.jsonl").read_text().splitlines()]
    assert rows[-1]["dev_accuracy"] == summary["dev_accuracy"] and rows[0]["loss"] > 0
    assert summary["dropout"] == 0.1  # the tiny schedule keeps the default, BERT's fine-tuning dropout


def test_written_checkpoint_is_the_trained_model(tiny_run):
    out, summary, sample = tiny_run
    p = bertg4.load(str(out), task="SST", seq_length=32)
    assert not any("randomly initialised" in n for n in p.notes)
    acc = float((p.predict(sample.first) == np.asarray(sample.labels)).mean())
    assert acc == summary["dev_accuracy"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_labels"] == 2 and cfg["bertg4"]["finetune"]["schedule"] == "tiny"


def test_finetune_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown schedule"):
        finetune(schedule="fast", output=str(tmp_path))
    with pytest.raises(ValueError, match="MRPC is not supported"):
        finetune(task="MRPC", output=str(tmp_path))
    for bad in ({"lr": -1.0}, {"dropout": 1.0}, {"dropout": -0.1}):
        with pytest.raises(ValueError, match=f"invalid schedule 'tiny': {next(iter(bad))} "):
            finetune(schedule="tiny", output=str(tmp_path), train=D.sample_sst(), dev=D.sample_sst(), **bad)
    assert cli.main(["finetune", "--model", str(tmp_path / "nothing"), "--output", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_accuracy_and_agreement_per_engine_and_rung(tiny_run):
    from bertg4.accuracy import format_accuracy, rung_accuracy
    out, summary, sample = tiny_run
    rows = rung_accuracy(str(out), "SST", "cpu", engines=("pt", "hf"), data=sample, seq_length=32,
                         recipes=["fp16", "+true_fp16", "interleaved-fp32", "sdpa-fp32"], log=lambda *_: None)
    by = {(r["engine"], r["recipe"]): r for r in rows}
    assert list(by)[0] == ("pt", "baseline")  # the reference is always first
    assert by[("pt", "baseline")]["accuracy"] == summary["dev_accuracy"]
    assert by[("pt", "+true_fp16")]["status"] == "not applicable"
    for key in (("pt", "interleaved-fp32"), ("pt", "sdpa-fp32"), ("hf", "sdpa-fp32")):
        assert by[key]["agreement_vs_fp32"] == 1.0 and by[key]["max_abs_logit_diff"] < 1e-4, key
    assert by[("pt", "fp16")]["finite"] and by[("pt", "fp16")]["max_abs_logit_diff"] < 0.05
    assert ("hf", "interleaved-fp32") not in by or by[("hf", "interleaved-fp32")]["status"] == "not applicable"
    table = format_accuracy(rows)
    assert "| pt | +true_fp16 | float16 | n/a |" in table


def test_accuracy_needs_a_trained_head():
    from bertg4.accuracy import rung_accuracy
    with pytest.raises(ValueError, match="no classifier head"):
        rung_accuracy("embedded", data=D.sample_sst())


def _inputs(n=4, L=16, seed=0):
    rng = np.random.default_rng(seed)
    valid = np.array([L, 3, 9, 12][:n])
    ids = rng.integers(5, SMALL.vocab_size, (n, L))
    ids[np.arange(L)[None, :] >= valid[:, None]] = 0
    return torch.from_numpy(ids), torch.zeros(n, L, dtype=torch.int64), torch.from_numpy(valid)


def _classifier(weights, **options):
    return load_weights(ForClassification(SMALL, 2, **options), weights)


@pytest.fixture(scope="module")
def small_weights():
    ck = bertg4.Checkpoint(SMALL, random_weights(SMALL, 0), None, source="test")
    add_head(ck, "classifier", 2, seed=0)
    return ck.weights


@pytest.mark.parametrize("attention", ["naive", "interleaved", "sdpa"])
def test_dropout_acts_only_while_training(small_weights, attention):
    args = _inputs()
    plain = _classifier(small_weights, attention=attention)
    with torch.no_grad():
        reference = plain.eval()(*args)
        # without dropout, training mode computes what eval mode does
        torch.testing.assert_close(plain.train()(*args), reference, rtol=0, atol=0)
        for options in ({"dropout": 0.1}, {"attention_dropout": 0.1},
                        {"dropout": 0.1, "attention_dropout": 0.1}):
            model = _classifier(small_weights, attention=attention, **options)
            torch.testing.assert_close(model.eval()(*args), reference, rtol=0, atol=0)
            model.train()
            torch.manual_seed(1)
            first = model(*args)
            torch.manual_seed(2)
            assert not torch.allclose(model(*args), first), options  # each setting really drops
            torch.manual_seed(1)
            torch.testing.assert_close(model(*args), first, rtol=0, atol=0)


def test_dropout_leaves_no_trace_in_served_graphs(small_weights):
    # the graph pass traces eval-mode modules: a model built with dropout gives the same graph
    plain = _classifier(small_weights, attention="interleaved").eval()
    dropped = _classifier(small_weights, attention="interleaved", dropout=0.1, attention_dropout=0.1).eval()
    _, r_plain = graph_pass.apply(plain)
    gm, r_dropped = graph_pass.apply(dropped)
    assert r_dropped["nodes_after"] == r_plain["nodes_after"]
    assert not any("dropout" in k for k in r_dropped["nodes_before"])
    with torch.no_grad():
        torch.testing.assert_close(gm(*_inputs()), plain(*_inputs()), atol=1e-6, rtol=0)


def test_qa_module_takes_dropout(small_weights):
    w = dict(small_weights)
    w.pop("classifier.weight"), w.pop("classifier.bias")
    w["qa_outputs.weight"] = np.zeros((2, SMALL.hidden_size), np.float32) + 0.01
    w["qa_outputs.bias"] = np.zeros(2, np.float32)
    model = load_weights(ForQuestionAnswering(SMALL, dropout=0.2), w)
    with torch.no_grad():
        evaluated = model.eval()(*_inputs())
        assert not torch.allclose(model.train()(*_inputs()), evaluated)
