"""The SST-2 head shipped for the embedded model: the file is the one its record describes, it is
what ``bertg4.load``/``deploy`` use by default and say they use, it classifies SST-2 dev far above
chance, and the ``probe`` schedule that made it trains and writes such a head."""
import json
import os
import tomllib

import numpy as np
import pytest
from safetensors.numpy import load_file

import bertg4
from bertg4 import checkpoint as C
from bertg4 import data as D
from bertg4.cli import main
from bertg4.finetune import HEAD_FILE, HEAD_RECORD, choose_l2, finetune, fit_logistic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEM = os.path.join(C.HEADS_DIR, C.SHIPPED_HEADS["SST"])


@pytest.fixture(scope="module")
def record():
    with open(STEM + ".json", encoding="utf-8") as f:
        return json.load(f)


def test_shipped_head_matches_its_record(record, embedded):
    path = STEM + ".safetensors"
    assert os.path.getsize(path) < 8 * 1024
    assert D.sha256(path) == record["sha256"]
    tensors = load_file(path)
    assert {k: list(v.shape) for k, v in tensors.items()} == record["shapes"] == \
        {"classifier.weight": [2, 384], "classifier.bias": [2]}
    assert all(np.isfinite(v).all() for v in tensors.values())
    # fitted on the installed embedded model, SST-2 train only, dev scored once and recorded
    assert record["backbone_fingerprint"] == C.backbone_fingerprint(embedded.weights)
    assert record["backbone_fingerprint_float16"] == C.backbone_fingerprint(embedded.weights, float16=True)
    assert record["train_data"]["sha256"] == D.SST2_SHA256["train.tsv"]
    assert record["dev_data"]["sha256"] == D.SST2_SHA256["dev.tsv"] and record["dev_data"]["rows"] == 872
    assert record["train_sentences"] == 20000 and record["schedule"] == "probe"
    assert record["l2_chosen"] in record["l2"] and str(record["l2_chosen"]) in record["holdout_accuracy"]
    assert 0.7 < record["dev_accuracy"] < 1.0
    for key in ("command", "date", "versions", "device_name", "mean_pooled_probe"):
        assert record[key], key
    # the head ships with the package
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["bertg4"]
    assert "heads/*.safetensors" in package_data and "heads/*.json" in package_data


def test_load_uses_the_shipped_head_and_says_so(record, embedded):
    p = bertg4.load("embedded", task="SST", seq_length=64)
    shipped = [n for n in p.notes if "shipped with bertg4" in n]
    assert len(shipped) == 1 and f"{100 * record['dev_accuracy']:.2f} %" in shipped[0]
    assert "bertg4/heads/embedded-SST-probe.json" in shipped[0]
    assert not any("randomly initialised" in n for n in p.notes)
    assert "float16 copy" not in shipped[0]  # the installed weights are the ones it was fitted on
    # the caller's checkpoint is not changed; a task without a trained head stays random, and says so
    assert "classifier.weight" not in embedded.weights
    for task in ("QA", "CoLA"):
        q = bertg4.load("embedded", task=task, seq_length=64)
        assert any("randomly initialised" in n for n in q.notes)
        assert not any("shipped with bertg4" in n for n in q.notes)


def test_shipped_head_reproduces_its_recorded_dev_accuracy(record, embedded, sst2_dev):
    ckpt = C.load_checkpoint("embedded")
    C.add_head(ckpt, "classifier", 2, task="SST")
    p = bertg4.load("embedded", task="SST", seq_length=128, checkpoint=ckpt)
    acc = float((p.predict(sst2_dev.first, batch_size=128) == np.asarray(sst2_dev.labels)).mean())
    # the same head on the same frozen encoder; float summation order may flip a borderline sentence
    assert abs(acc - record["dev_accuracy"]) <= 2 / 872, (acc, record["dev_accuracy"])
    # the hf engine (transformers' BertModel + the same Linear) reads the same head
    h = bertg4.load("embedded", task="SST", engine="hf", seq_length=64, checkpoint=ckpt)
    assert h.predict(sst2_dev.first[:32]).tolist() == p.predict(sst2_dev.first[:32]).tolist()


def test_mx_engine_runs_the_shipped_head(sst2_dev):
    from bertg4.mx import available
    if not available():
        pytest.skip("MXNet 1.9.1 + GluonNLP 0.10.0 not installed (pip install -e '.[mxnet]')")
    ckpt = C.load_checkpoint("embedded")
    C.add_head(ckpt, "classifier", 2, task="SST")
    p = bertg4.load("embedded", task="SST", seq_length=64, checkpoint=ckpt)
    m = bertg4.load("embedded", task="SST", engine="mx", seq_length=64, checkpoint=ckpt)
    assert m.predict(sst2_dev.first[:32]).tolist() == p.predict(sst2_dev.first[:32]).tolist()


def test_a_float16_copy_of_the_encoder_keeps_the_head_and_says_so(tmp_path, record, sst2_dev, measured):
    """scripts/gpu_carry.py's copy: the weights in float16, every other file and folder as it was,
    the shipped head still used and named as used on a copy; the copy's tensors rounded to
    bfloat16 instead are another encoder's."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_carry.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    source, copy = C.embedded_dir(), tmp_path / "minilm"
    assert f"copied {source} in float16" in out.stdout
    half = load_file(str(copy / "model.safetensors"))
    floats = sum(v.size for v in half.values() if v.dtype == np.float16)
    assert half["pooler.dense.weight"].dtype == np.float16 and floats > 20_000_000
    assert os.path.getsize(copy / "model.safetensors") < 2 * sum(v.size * v.itemsize for v in half.values())
    assert sorted(os.path.relpath(os.path.join(d, f), source) for d, _, fs in os.walk(source) for f in fs) == \
        sorted(os.path.relpath(os.path.join(d, f), copy) for d, _, fs in os.walk(copy) for f in fs)
    ckpt = C.load_checkpoint(str(copy))
    C.add_head(ckpt, "classifier", 2, task="SST")
    (note,) = [n for n in ckpt.notes if "shipped with bertg4" in n]
    assert "float16 copy of those it was fitted on" in note
    p = bertg4.load("embedded", task="SST", seq_length=128, checkpoint=ckpt)
    acc = float((p.predict(sst2_dev.first, batch_size=128) == np.asarray(sst2_dev.labels)).mean())
    measured("SST-2 dev accuracy, shipped head on a float16 copy of the embedded weights", f"{acc:.4f}")
    assert abs(acc - record["dev_accuracy"]) <= 4 / 872, (acc, record["dev_accuracy"])
    other = C.load_checkpoint(str(copy))
    import torch
    other.weights = {k: torch.from_numpy(v).bfloat16().float().numpy() for k, v in other.weights.items()}
    C.add_head(other, "classifier", 2, task="SST")
    assert any("not used" in n for n in other.notes) and any("randomly initialised" in n for n in other.notes)
    # what the copy refuses: itself as its target, a weight float16 cannot hold, a .bin checkpoint
    with pytest.raises(C.CheckpointError, match="another folder"):
        C.float16_copy(str(copy), str(copy))
    big = tmp_path / "big"
    big.mkdir()
    from safetensors.numpy import save_file
    save_file({"w": np.array([1.0, 7e4], np.float32)}, str(big / "model.safetensors"))
    with pytest.raises(C.CheckpointError, match=r"w holds values beyond float16's range"):
        C.float16_copy(str(big), str(tmp_path / "big16"))
    assert not (tmp_path / "big16").exists()
    binary = tmp_path / "bin"
    binary.mkdir()
    torch.save({"w": torch.ones(2)}, str(binary / "pytorch_model.bin"))
    with pytest.raises(C.CheckpointError, match="reads model.safetensors only"):
        C.float16_copy(str(binary), str(tmp_path / "bin16"))


def test_a_head_fitted_on_other_weights_is_not_used():
    ckpt = C.load_checkpoint("random:minilm_6_384_12")
    C.add_head(ckpt, "classifier", 2, task="SST")
    assert any("not used" in n for n in ckpt.notes) and any("randomly initialised" in n for n in ckpt.notes)


def test_deploy_scores_sst2_dev_with_the_shipped_head(tmp_path, capsys, measured):
    out = tmp_path / "out"
    code = main(["deploy", "--task", "SST", "--max-eval", "64", "--batch-size", "32", "--seq-length",
                 "128", "--max-iters", "1", "--warmup", "0", "--no-progress", "--output-dir", str(out)])
    assert code == 0
    rec = json.loads((out / "deploy_record.json").read_text())
    printed = capsys.readouterr().out
    assert rec["data"] == D.SST2_DEV and rec["examples"] == 64
    assert rec["accuracy"] > 0.7  # chance is 0.5
    measured("deploy accuracy, shipped SST-2 head, first 64 SST-2 dev sentences", rec["accuracy"])
    assert "linear probe shipped with bertg4" in rec["head"]
    assert "task head: SST-2 linear probe shipped with bertg4" in printed
    assert "accuracy is chance level" not in printed


def test_deploy_qa_says_its_head_is_random(tmp_path, capsys):
    out = tmp_path / "qa"
    code = main(["deploy", "--task", "QA", "--engine", "hf", "--batch-size", "8", "--seq-length", "64",
                 "--max-iters", "1",
                 "--warmup", "0", "--no-progress", "--output-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sample answers (task head: random-init (not fine-tuned), answers meaningless)" in printed
    assert "its answers are meaningless" in printed


def test_fit_logistic_reaches_the_optimum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5)) * [1, 2, 3, 0.5, 10] + [0, 1, 0, 0, 5]
    y = (x[:, 0] - 0.3 * x[:, 1] + 0.1 * rng.standard_normal(400) > 0).astype(np.int64)
    l2 = 1e-2
    w, b = fit_logistic(x, y, 2, l2)
    assert w.shape == (2, 5) and b.shape == (2,)
    assert ((x @ w.T + b).argmax(-1) == y).mean() > 0.95
    # the gradient of the objective (on standardised features) vanishes at the returned head
    mu, sd = x.mean(0), x.std(0, ddof=1)
    W = w.astype(np.float64) * sd
    logits = ((x - mu) / sd) @ W.T + (b + w @ mu)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(2)[y]).T @ ((x - mu) / sd) / len(y) + l2 * W
    assert np.abs(g).max() < 1e-4


def test_choose_l2_uses_held_out_training_rows_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 50))
    y = (x[:, 0] > 0).astype(np.int64)  # one informative feature among 50: strong L2 hurts
    best, scores = choose_l2(x, y, 2, (1e-3, 100.0), 0.2, np.random.default_rng(0))
    assert set(scores) == {1e-3, 100.0} and best == 1e-3 and scores[1e-3] > scores[100.0]
    with pytest.raises(ValueError, match="too few"):
        choose_l2(x[:3], np.array([0, 1, 1]), 2, (1.0,), 0.5, np.random.default_rng(0))


def test_probe_schedule_trains_a_head(tmp_path):
    sample = D.sample_sst()
    out = tmp_path / "probe"
    summary = finetune("embedded", "SST", "probe", output=str(out), train=sample, dev=sample,
                       progress=False, log=lambda *_: None)
    assert summary["schedule"] == "probe" and summary["train_sentences"] == 32
    assert summary["train_accuracy"] >= 0.9 and summary["dev_accuracy"] >= 0.9  # dev is the train set here
    rec = json.loads((out / HEAD_RECORD).read_text())
    assert rec["sha256"] == D.sha256(str(out / HEAD_FILE)) and rec["shapes"]["classifier.weight"] == [2, 384]
    assert rec["dev_accuracy"] == summary["dev_accuracy"] and "mean_pooled_probe" in rec
    # the written folder is a checkpoint like any other, its classifier the probe
    p = bertg4.load(str(out), task="SST", seq_length=64)
    acc = float((p.predict(sample.first) == np.asarray(sample.labels)).mean())
    assert abs(acc - summary["dev_accuracy"]) <= 1 / 32
    with pytest.raises(ValueError, match="holdout"):
        finetune("embedded", "SST", "probe", output=str(tmp_path / "bad"), train=sample, dev=sample,
                 holdout=1.5)


def test_ort_engine_runs_the_shipped_head(sst2_dev):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is the ort extra")
    ckpt = C.load_checkpoint("embedded")
    C.add_head(ckpt, "classifier", 2, task="SST")
    p = bertg4.load("embedded", task="SST", seq_length=64, checkpoint=ckpt)
    o = bertg4.load("embedded", task="SST", engine="ort", seq_length=64, checkpoint=ckpt)
    assert any("shipped with bertg4" in n for n in o.notes)
    assert o.predict(sst2_dev.first[:32]).tolist() == p.predict(sst2_dev.first[:32]).tolist()
