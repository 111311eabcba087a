"""`bertg4 finetune --task QA`: the span targets point at the answers, training lowers the loss,
the written checkpoint is the trained model, and bad input is refused with its name."""
import json

import numpy as np
import pytest

import bertg4
from bertg4 import cli
from bertg4 import data as D
from bertg4.checkpoint import load_checkpoint
from bertg4.finetune import QA_SCHEDULES, qa_targets
from bertg4.tasks import squad_scores
from bertg4.text import TextError, Tokenizer


@pytest.fixture(scope="module")
def tiny_qa(tmp_path_factory):
    from bertg4.finetune import finetune
    out = tmp_path_factory.mktemp("ftqa")
    summary = finetune("embedded", "QA", "tiny", output=str(out), train=D.squad_small("train"),
                       dev=D.squad_small("dev"), progress=False, log=lambda *_: None, epochs=5, lr=3e-4)
    return out, summary


def test_span_targets_point_at_the_answers():
    ckpt = load_checkpoint("embedded")
    tok = Tokenizer(ckpt.vocab, lowercase=ckpt.do_lower_case)
    qa = D.squad_small("train")
    # short windows: long passages are split, and some windows miss their answer
    feats = tok.encode_squad(qa.questions, qa.contexts, seq_len=96, max_query_length=32, doc_stride=32)
    starts, ends, inside = qa_targets(feats, qa)
    assert len(set(feats.example_index)) == len(qa) and len(feats.example_index) > len(qa)
    assert inside.any() and not inside.all()
    for r in range(len(inside)):
        e = feats.example_index[r]
        if not inside[r]:
            assert starts[r] == ends[r] == 0  # [CLS]
            continue
        c0, c1 = feats.offsets[r, starts[r], 0], feats.offsets[r, ends[r], 1]
        assert starts[r] <= ends[r] and qa.contexts[e][c0:c1] == qa.answers[e][0]
    # every question has at least one window holding its whole answer
    assert set(feats.example_index[inside]) == set(range(len(qa)))


def test_training_lowers_the_loss(tiny_qa):
    out, summary = tiny_qa
    assert summary["task"] == "QA" and summary["train_questions"] == QA_SCHEDULES["tiny"].max_train
    assert summary["steps"] == 5 * int(np.ceil(summary["train_windows"] / 8))
    rows = [json.loads(line) for line in (out / "finetune_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    quarter = max(1, len(losses) // 4)
    first, last = np.mean(losses[:quarter]), np.mean(losses[-quarter:])
    assert np.isfinite(losses).all() and last < 0.8 * first, (first, last)
    assert rows[-1]["dev_f1"] == summary["dev_f1"] and 0 <= summary["dev_exact_match"] <= summary["dev_f1"]


def test_written_checkpoint_is_the_trained_model(tiny_qa):
    out, summary = tiny_qa
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BertForQuestionAnswering"]
    assert cfg["bertg4"]["finetune"]["schedule"] == "tiny"
    p = bertg4.load(str(out), task="QA", seq_length=QA_SCHEDULES["tiny"].max_length)
    assert not any("randomly initialised" in n for n in p.notes)
    dev = D.squad_small("dev")
    answers = [a["text"] for a in p.predict(list(zip(dev.questions, dev.contexts)))]
    written = json.loads((out / "predictions.json").read_text())
    assert answers == [written[q] for q in dev.ids]
    scores = squad_scores(answers, dev)
    assert (scores["exact_match"], scores["f1"]) == (summary["dev_exact_match"], summary["dev_f1"])


def test_cli_finetune_qa(tmp_path):
    code = cli.main(["finetune", "--task", "QA", "--schedule", "tiny", "--epochs", "3", "--max-steps", "2", "--max-train", "8",
                     "--train-data", f"{D.SQUAD_SMALL}/train.json", "--dev-data", f"{D.SQUAD_SMALL}/dev.json",
                     "--output", str(tmp_path), "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "finetune.json").read_text())
    assert summary["steps"] == 2 and summary["train_questions"] == 8 and summary["dev_questions"] == 25
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "vocab.txt").is_file()


def test_finetune_qa_refuses_bad_input(tmp_path, capsys):
    from bertg4.finetune import finetune
    with pytest.raises(ValueError, match="unknown schedule 'fast'"):
        finetune(task="QA", schedule="fast", output=str(tmp_path))
    bad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The sky is blue.",
           "qas": [{"id": "q1", "question": "What colour?", "answers": [{"text": "blue", "answer_start": 3}]}]}]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TextError, match="question 'q1': answer_start 3 points at"):
        finetune(task="QA", schedule="tiny", output=str(tmp_path / "out"), train=str(tmp_path / "bad.json"),
                 dev=D.squad_small("dev"), progress=False, log=lambda *_: None)
    assert cli.main(["finetune", "--task", "QA", "--train-data", str(tmp_path / "missing.json"),
                     "--dev-data", str(tmp_path / "bad.json"), "--output", str(tmp_path / "o")]) == 2
    assert "missing.json" in capsys.readouterr().err
