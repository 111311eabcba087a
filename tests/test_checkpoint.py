import json
import os
import shutil

import numpy as np
import pytest
import torch

import bertg4
from bertg4 import mxfile
from bertg4.checkpoint import (CheckpointError, backbone_shapes, deinterleave_qkv, embedded_dir,
                               interleave_qkv, load_checkpoint, load_gluon_params, random_weights)
from bertg4.config import BertConfig, get_config
from bertg4.system import MEMORY_NOTE
from bertg4.text import Batch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TINY = BertConfig(2, 32, 4, 64, 35, 40, name="tiny")  # the GluonNLP fixture's shape
REF = os.path.join(FIXTURES, "gluonnlp_tiny_reference.npz")


def test_embedded_checkpoint_is_complete(embedded):
    shapes = backbone_shapes(embedded.config)
    assert set(embedded.weights) == set(shapes)
    for name, shape in shapes.items():
        assert embedded.weights[name].shape == shape
        assert embedded.weights[name].dtype == np.float32
    assert os.path.isfile(embedded.vocab)
    assert embedded.heads == set()


def _copy_embedded(tmp_path, fmt):
    src = embedded_dir()
    dst = tmp_path / "model"
    dst.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, name), dst / name)
    if fmt == "safetensors":
        shutil.copy(os.path.join(src, "model.safetensors"), dst / "model.safetensors")
    else:  # a BertForSequenceClassification-style pytorch_model.bin with the "bert." prefix
        from safetensors.torch import load_file
        sd = {"bert." + k: v for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
        sd["classifier.weight"] = torch.randn(3, 384)
        sd["classifier.bias"] = torch.randn(3)
        sd["cls.predictions.bias"] = torch.zeros(30522)  # a pre-training head: ignored
        torch.save(sd, dst / "pytorch_model.bin")
    return dst


def test_hf_folder_sources_agree(embedded, tmp_path):
    st = load_checkpoint(str(_copy_embedded(tmp_path / "a", "safetensors")))
    pt = load_checkpoint(str(_copy_embedded(tmp_path / "b", "bin")))
    for name, arr in embedded.weights.items():
        np.testing.assert_array_equal(st.weights[name], arr)
        np.testing.assert_array_equal(pt.weights[name], arr)
    assert pt.heads == {"classifier"} and pt.num_labels() == 3


def test_truncated_safetensors(tmp_path):
    d = _copy_embedded(tmp_path, "safetensors")
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(str(d))


def test_missing_and_mismatched_tensors(tmp_path):
    from safetensors.numpy import load_file, save_file
    d = _copy_embedded(tmp_path, "safetensors")
    w = load_file(d / "model.safetensors")
    del w["encoder.layer.3.attention.self.value.bias"]
    save_file(w, d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'encoder.layer.3.attention.self.value.bias' is missing"):
        load_checkpoint(str(d))
    # config says hidden 768 while the file holds 384: name the tensor, expected vs found
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(hidden_size=768, intermediate_size=3072)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"has shape \(30522, 384\), expected \(30522, 768\)"):
        load_checkpoint(str(d))


def test_config_with_fewer_layers_than_the_file(tmp_path):
    d = _copy_embedded(tmp_path, "safetensors")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 4
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unexpected tensors.*encoder.layer.4"):
        load_checkpoint(str(d))


def test_missing_model_and_unknown_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "nothing-here"))
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint file"):
        load_checkpoint(str(tmp_path / "w.onnx"))


def test_random_presets():
    ck = load_checkpoint("random:bert_12_768_12")
    assert ck.config.name == "bert_12_768_12"
    assert set(ck.weights) == set(backbone_shapes(ck.config))
    w = ck.weights["encoder.layer.0.attention.self.query.weight"]
    assert abs(float(w.std()) - 0.02) < 1e-3
    np.testing.assert_array_equal(ck.weights["encoder.layer.0.output.LayerNorm.weight"], 1.0)
    np.testing.assert_array_equal(random_weights(TINY, seed=1)["pooler.dense.weight"],
                                  random_weights(TINY, seed=1)["pooler.dense.weight"])


# ----------------------------------------------------------------------------- GluonNLP .params

def test_mxfile_reads_names_shapes_dtypes():
    params = mxfile.load(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"))
    assert params["bert.word_embed.0.weight"].shape == (35, 32)
    assert params["bert.encoder.transformer_cells.1.ffn.ffn_1.weight"].shape == (64, 32)
    assert params["classifier.1.weight"].shape == (3, 32)
    assert all(v.dtype == np.float32 for v in params.values())


@pytest.mark.parametrize("cut", [10, 200, 40000, -3])
def test_mxfile_truncated(tmp_path, cut):
    raw = open(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"), "rb").read()
    p = tmp_path / "cut.params"
    p.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="truncated|ends"):
        load_gluon_params(str(p), TINY)


def test_mxfile_not_params(tmp_path):
    p = tmp_path / "x.params"
    p.write_bytes(b"PK\x03\x04 not an ndarray file at all")
    with pytest.raises(CheckpointError, match="not an MXNet NDArray file"):
        load_gluon_params(str(p), TINY)


def _reference_batch():
    ref = np.load(REF)
    return ref, Batch(ref["input_ids"], ref["token_types"], ref["valid_length"])


def test_gluonnlp_classifier_params_reproduce_gluonnlp_outputs():
    """The fixture was written by mxnet 1.9.1 + gluonnlp 0.10.0 (make_gluonnlp_fixture.py)."""
    ref, batch = _reference_batch()
    ck = load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"), TINY,
                           vocab=os.path.join(FIXTURES, "gluonnlp_tiny_vocab.txt"))
    assert ck.heads == {"classifier"} and ck.num_labels() == 3
    p = bertg4.load(task="SST", checkpoint=ck, seq_length=12)
    assert [n for n in p.notes if not n.startswith(MEMORY_NOTE)] == []  # the head is the checkpoint's
    np.testing.assert_allclose(p(batch), ref["clf_logits"], atol=1e-5, rtol=0)
    from bertg4.pt.model import ForEncoding, load_weights
    enc = load_weights(ForEncoding(TINY), ck.weights).eval()
    with torch.no_grad():
        seq, pooled = enc(*p.prepare(batch))
    valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
    np.testing.assert_allclose(seq.numpy()[valid], ref["clf_sequence"][valid], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled.numpy(), ref["clf_pooled"], atol=1e-5, rtol=0)


def test_gluonnlp_qa_params_reproduce_gluonnlp_outputs():
    ref, batch = _reference_batch()
    ck = load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_qa.params"), TINY)
    assert ck.heads == {"qa_outputs"}
    assert any("no pooler" in n for n in ck.notes)
    p = bertg4.load(task="QA", checkpoint=ck, seq_length=12)
    valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
    np.testing.assert_allclose(p(batch)[valid], ref["qa_logits"][valid], atol=1e-5, rtol=0)


def test_gluonnlp_params_need_heads_count_unless_preset():
    with pytest.raises(CheckpointError, match="number of attention heads cannot be read"):
        load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"))


def test_gluonnlp_params_for_another_size():
    with pytest.raises(CheckpointError, match=r"expected \(30522, 768\)"):
        load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"),
                          get_config("bert_12_768_12"))


# ----------------------------------------------------------------------------- layout helpers

def test_interleave_layout_and_roundtrip():
    heads, d, cin = 3, 2, 5
    q, k, v = (np.arange(heads * d * cin).reshape(heads * d, cin) + off for off in (0, 1000, 2000))
    w = interleave_qkv(q, k, v, heads)
    assert w.shape == (3 * heads * d, cin)
    # head 1's block is [q rows 2:4; k rows 2:4; v rows 2:4]
    np.testing.assert_array_equal(w[6:8], q[2:4])
    np.testing.assert_array_equal(w[8:10], k[2:4])
    np.testing.assert_array_equal(w[10:12], v[2:4])
    for a, b in zip(deinterleave_qkv(w, heads), (q, k, v)):
        np.testing.assert_array_equal(a, b)
    bias = interleave_qkv(q[:, 0], k[:, 0], v[:, 0], heads)
    np.testing.assert_array_equal(bias[10:12], v[2:4, 0])
    with pytest.raises(ValueError, match="cannot be split"):
        interleave_qkv(q[:5], k[:5], v[:5], heads)
