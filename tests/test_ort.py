"""The ONNX Runtime yardstick engine (``engine="ort"``): parity with the PyTorch engine's fp32
outputs, its dynamic INT8, what it refuses, and life without the ``ort`` extra."""
import builtins

import numpy as np
import pytest

import bertg4
from bertg4.checkpoint import Checkpoint, add_head, random_weights
from bertg4.config import BertConfig
from bertg4.recipe import NotApplicable
from bertg4.text import Batch

ort = pytest.importorskip("onnxruntime", reason="the ort extra is not installed (pip install -e '.[ort]')")

SMALL = BertConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128, vocab_size=60,
                   max_position_embeddings=64, name="small")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ck = Checkpoint(SMALL, random_weights(SMALL, seed=5), None, "random small")
    add_head(ck, "classifier", 3, seed=6)
    add_head(ck, "qa_outputs", seed=7)
    return ck


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BERTG4_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _rows(n=7, seq=24, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 2, 3, seq, 9, 17, 5][:n])
    ids = rng.integers(5, SMALL.vocab_size, size=(n, seq))
    ids[np.arange(seq)[None, :] >= lengths[:, None]] = 0
    types = (np.arange(seq)[None, :] >= (lengths[:, None] // 2)).astype(np.int64) * (ids > 0)
    return Batch(ids, types, lengths)


@pytest.mark.parametrize("task", ["SST", "QA", "embedding"])
def test_ort_matches_pt_fp32_in_fixed_and_longest(small, task):
    batch = _rows()
    pt = bertg4.load(task=task, checkpoint=small, seq_length=24)
    o = bertg4.load(task=task, engine="ort", checkpoint=small, seq_length=24)
    ref = pt.infer(batch, 3, padding="fixed")
    valid = np.arange(24)[None, :] < batch.valid_length[:, None]
    for mode in ("fixed", "longest"):
        out = o.infer(batch, 3, padding=mode)
        assert out.shape == ref.shape
        got, want = (out[valid], ref[valid]) if task == "QA" else (out, ref)
        assert np.isfinite(got).all()
        assert np.abs(got - want).max() < 1e-4, (mode, np.abs(got - want).max())
    # the optimizer fused BERT's attention and layer norms: it is ORT's optimized graph that runs
    assert o.fused.get("Attention", 0) == SMALL.num_layers and o.fused.get("SkipLayerNormalization", 0) > 0


def test_ort_int8_is_a_different_but_close_computation(small):
    batch = _rows()
    fp32 = bertg4.load(task="embedding", engine="ort", checkpoint=small, seq_length=24)
    int8 = bertg4.load(task="embedding", engine="ort", recipe="int8", checkpoint=small, seq_length=24)
    a, b = fp32.infer(batch, 4), int8.infer(batch, 4)
    cosine = (a * b).sum(-1)
    assert cosine.min() > 0.9
    assert np.abs(a - b).max() > 1e-5
    assert int8.path.endswith("-int8.onnx") and int8.path != fp32.path


def test_ort_refuses_other_rungs_and_packed(small):
    with pytest.raises(NotApplicable, match="baseline, int8"):
        bertg4.load(task="SST", engine="ort", recipe="+interleaved", checkpoint=small, seq_length=24)
    o = bertg4.load(task="SST", engine="ort", checkpoint=small, seq_length=24)
    with pytest.raises(NotApplicable, match="packed"):
        o.infer(_rows(), 4, padding="packed")


def test_without_onnxruntime_engine_ort_says_how_to_install(small, monkeypatch, tmp_path):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in ("onnxruntime", "onnx"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    from bertg4.ort import ORTUnavailable
    with pytest.raises(ORTUnavailable, match=r"pip install -e '\.\[ort\]'"):
        bertg4.load(task="SST", engine="ort", checkpoint=small, seq_length=24)
    from bertg4.bench import read_records
    from bertg4.cli import main
    assert main(["bench", "--engine", "ort", "--model", "random:bert_12_768_12", "--quick",
                 "--batch-sizes", "1", "--output", str(tmp_path), "--no-progress"]) == 0
    (rec,) = read_records(str(tmp_path / "records.jsonl"))
    assert rec["engine"] == "ort" and rec["status"] == "not available"
    assert "pip install -e '.[ort]'" in rec["reason"]
