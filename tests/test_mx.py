"""The MXNet 1.9 + GluonNLP 0.10 engine: parity with the PyTorch engine, the graph pass,
the environment switches, INT8, export/reload, and life without MXNet installed.

The tests that run MXNet need the ``mxnet`` extra (``pip install -e '.[mxnet]'``), which
the README's test command installs; without it they skip and say so.
"""
import dataclasses
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import bertg4
from bertg4.checkpoint import add_head, load_gluon_params, random_weights
from bertg4.config import BertConfig
from bertg4.mx import compat
from bertg4.recipe import NotApplicable, Recipe
from bertg4.text import Batch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TINY = BertConfig(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, vocab_size=35,
                  max_position_embeddings=40, name="tiny")

needs_mxnet = pytest.mark.skipif(
    not compat.available(),
    reason="MXNet 1.9.1 + GluonNLP 0.10.0 not installed (pip install -e '.[mxnet]'; numpy 1.26.4)")


# ----------------------------------------------------------------- without MXNet

def test_numpy_shim_adds_the_alias_once_and_refuses_numpy2():
    fake = types.SimpleNamespace(__version__="1.26.4")
    assert compat.numpy_shim(fake) is True and fake.bool is bool
    assert compat.numpy_shim(fake) is False  # already there: untouched
    with pytest.raises(compat.MXNetUnavailable, match=r"needs MXNet 1.9.1.*numpy < 2.*pip install"):
        compat.numpy_shim(types.SimpleNamespace(__version__="2.1.0"))


BLOCKED = ("import sys; sys.modules['mxnet'] = None; sys.modules['gluonnlp'] = None\n")


def test_without_mxnet_the_mx_engine_says_how_to_install_and_pt_still_works():
    code = BLOCKED + (
        "import bertg4\n"
        "from bertg4.mx import MXNetUnavailable\n"
        "p = bertg4.load('embedded', 'SST', 'pt', seq_length=16)\n"
        "print('pt ok', p(p.featurize(['a fine film'])).shape)\n"
        "try:\n"
        "    bertg4.load('embedded', 'SST', 'mx')\n"
        "except MXNetUnavailable as e:\n"
        "    print('mx:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pt ok (1, 2)" in out.stdout
    assert "mx: engine 'mx' needs MXNet 1.9.1 and GluonNLP 0.10.0" in out.stdout
    assert "pip install -e '.[mxnet]'" in out.stdout


def test_without_mxnet_deploy_engine_mx_is_a_clear_cli_error(tmp_path):
    code = BLOCKED + ("from bertg4.cli import main\n"
                      f"raise SystemExit(main(['deploy', '--engine', 'mx', '--output-dir', {str(tmp_path)!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "bertg4 deploy: error: engine 'mx' needs MXNet" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_mxnet_a_sweep_records_the_engine_as_not_available(tmp_path):
    path = tmp_path / "records.jsonl"
    code = BLOCKED + (
        "from bertg4.sweep import plan, run_sweep\n"
        f"run_sweep(plan(['mx', 'pt'], ['baseline'], ['SST'], [16], [1]), {str(path)!r}, "
        "model='embedded', iters=1, warmup=0, progress=False, isolate=False)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_engine = {r["engine"]: r for r in rows}
    assert by_engine["mx"]["status"] == "not available" and "pip install" in by_engine["mx"]["reason"]
    assert by_engine["pt"]["status"] == "ok"


# ----------------------------------------------------------------- with MXNet

@pytest.fixture(scope="module")
def mx():
    if not compat.available():
        pytest.skip("MXNet 1.9.1 + GluonNLP 0.10.0 not installed (pip install -e '.[mxnet]')")
    return compat.import_mxnet()[0]


def _batches(tok, sentences, sizes, seq_len=64):
    start = 0
    for size in sizes:
        yield tok.encode_sentences(sentences[start:start + size], seq_len=seq_len)
        start += size


@needs_mxnet
def test_mx_matches_pt_on_sst2_dev_all_outputs(embedded, sst2_dev, measured):
    """Sequence output (valid tokens), pooled output, classifier and QA logits, fp32, CPU."""
    import torch
    from bertg4.mx import model as MM
    from bertg4.pt import model as PM
    ck = dataclasses.replace(embedded, weights=dict(embedded.weights), notes=list(embedded.notes))
    add_head(ck, "classifier", 2, seed=3)
    add_head(ck, "qa_outputs", seed=4)
    tok = bertg4.api.tokenizer_for(ck)
    mx_ = compat.import_mxnet()[0]
    enc_mx = MM.build_block(ck, "encoding")
    enc_mx.hybridize(static_alloc=True, static_shape=True)
    enc_pt = PM.load_weights(PM.ForEncoding(ck.config), ck.weights).eval()
    clf = {e: bertg4.load(task="SST", engine=e, checkpoint=ck, seq_length=64) for e in ("pt", "mx")}
    qa = {e: bertg4.load(task="QA", engine=e, checkpoint=ck, seq_length=64) for e in ("pt", "mx")}
    worst = {"sequence": 0.0, "pooled": 0.0, "logits": 0.0, "qa": 0.0}
    sizes = [1, 2, 3, 5, 8, 13, 16, 32]
    for batch in _batches(tok, sst2_dev.first, sizes):
        assert (batch.valid_length < batch.seq_len).any() or len(batch) == 1  # padded rows
        args = [mx_.nd.array(a, dtype="float32") for a in (batch.input_ids, batch.token_types, batch.valid_length)]
        seq_m, pooled_m = (o.asnumpy() for o in enc_mx(*args))
        with torch.no_grad():
            seq_p, pooled_p = (o.numpy() for o in enc_pt(*(torch.from_numpy(a) for a in (
                batch.input_ids, batch.token_types, batch.valid_length))))
        valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
        worst["sequence"] = max(worst["sequence"], np.abs(seq_m[valid] - seq_p[valid]).max())
        assert not seq_m[~valid].any()  # GluonNLP's encoder zeroes padded positions
        worst["pooled"] = max(worst["pooled"], np.abs(pooled_m - pooled_p).max())
        worst["logits"] = max(worst["logits"], np.abs(clf["mx"](batch) - clf["pt"](batch)).max())
        q_m, q_p = qa["mx"](batch), qa["pt"](batch)
        worst["qa"] = max(worst["qa"], np.abs(q_m[valid] - q_p[valid]).max())
    measured("mx vs pt max-abs (SST-2 dev, batch 1-32, seq 64)",
             ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    for name, value in worst.items():
        assert value <= 1e-4, f"{name}: mx and pt differ by {value}"


@needs_mxnet
def test_mx_engine_reproduces_gluonnlp_own_outputs_from_params_files(mx):
    """Fixture outputs were written by GluonNLP 0.10's own BERTClassifier / BertForQA."""
    ref = np.load(os.path.join(FIXTURES, "gluonnlp_tiny_reference.npz"))
    batch = Batch(ref["input_ids"], ref["token_types"], ref["valid_length"])
    clf = load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_classifier.params"), TINY)
    p = bertg4.load(task="SST", engine="mx", checkpoint=clf, seq_length=12)
    np.testing.assert_allclose(p(batch), ref["clf_logits"], atol=1e-5, rtol=0)
    qa = load_gluon_params(os.path.join(FIXTURES, "gluonnlp_tiny_qa.params"), TINY)
    p = bertg4.load(task="QA", engine="mx", checkpoint=qa, seq_length=12)
    valid = np.arange(12)[None, :] < batch.valid_length[:, None]
    np.testing.assert_allclose(p(batch)[valid], ref["qa_logits"][valid], atol=1e-5, rtol=0)


def _distinct_bias_checkpoint(seed=7):
    """Random weights whose Q, K and V biases differ from each other (and are far from zero)."""
    from bertg4.checkpoint import Checkpoint
    w = random_weights(TINY, seed=seed)
    rng = np.random.default_rng(seed)
    for name in w:
        if name.endswith(".bias"):
            w[name] = rng.normal(0, 0.5, w[name].shape).astype(np.float32)
    for i in range(TINY.num_layers):
        for j, slot in enumerate(("query", "key", "value")):
            w[f"encoder.layer.{i}.attention.self.{slot}.bias"] += np.float32(j - 1)  # -1, 0, +1
    ck = Checkpoint(TINY, w, None, "distinct-bias test model")
    add_head(ck, "classifier", 2, seed=seed)
    return ck


def _tiny_batch(n=4, seq=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, TINY.vocab_size, size=(n, seq))
    valid = np.array([seq, 9, 4, 1][:n] + [seq] * max(0, n - 4))
    ids[np.arange(seq)[None, :] >= valid[:, None]] = 0
    types = (np.arange(seq)[None, :] >= 6).astype(np.int64).repeat(n, 0)
    return Batch(ids, types, valid)


@needs_mxnet
def test_graph_pass_keeps_outputs_with_distinct_qkv_biases(mx, tmp_path):
    ck = _distinct_bias_checkpoint()
    batch = _tiny_batch()
    plain = bertg4.load(task="SST", engine="mx", recipe="interleaved-fp32", checkpoint=ck, seq_length=12)
    passed = bertg4.load(task="SST", engine="mx", recipe="graph-pass-fp32", checkpoint=ck, seq_length=12)
    report = passed.graph_report
    assert report["qkv_prearranged"] == 2 * TINY.num_layers and report["bias_gelu_split"] == TINY.num_layers
    before, after = report["nodes_before"], report["nodes_after"]
    assert before["Concat"] == before["stack"] == TINY.num_layers and "Concat" not in after
    assert after["broadcast_add"] == before.get("broadcast_add", 0) + TINY.num_layers
    assert sum(after.values()) < sum(before.values())
    np.testing.assert_allclose(passed(batch), plain(batch), atol=1e-5, rtol=0)

    # the rewritten graph: no per-call concat/stack left, one broadcast_add before each GELU
    graph = json.load(open(os.path.join(passed.exported, "model-symbol.json")))
    ops = [n["op"] for n in graph["nodes"]]
    assert "Concat" not in ops and "stack" not in ops
    gelu_inputs = [graph["nodes"][n["inputs"][0][0]]["op"] for n in graph["nodes"]
                   if n["op"] == "LeakyReLU"]
    assert gelu_inputs == ["broadcast_add"] * TINY.num_layers

    # every slot of the joint bias is its own tensor: value slots hold the value bias
    params = {k.split(":", 1)[1]: v.asnumpy() for k, v in
              mx.nd.load(os.path.join(passed.exported, "model-0000.params")).items()}
    (name,) = [k for k in params if k.endswith("qkv_bias") and "transformer0" in k]
    joint = params[name].reshape(TINY.num_heads, 3, -1)
    value_bias = ck.weights["encoder.layer.0.attention.self.value.bias"].reshape(TINY.num_heads, -1)
    np.testing.assert_array_equal(joint[:, 2], value_bias)

    # and the equality check is not blind: a pass that took the value bias from elsewhere fails it
    broken = dict(params)
    broken[name] = joint.copy()
    broken[name][:, 2] = joint[:, 0]
    broken[name] = broken[name].reshape(-1)
    mx.nd.save(os.path.join(passed.exported, "model-0000.params"),
               {f"arg:{k}": mx.nd.array(v) for k, v in broken.items()})
    from bertg4.mx.engine import import_block
    bad = import_block(passed.exported, mx.cpu())
    staged = plain.prepare(batch)
    assert np.abs(bad(*staged).asnumpy() - plain(batch)).max() > 1e-3


@needs_mxnet
def test_graph_pass_on_a_passed_graph_changes_nothing(mx):
    from bertg4.mx import graph_pass
    ck = _distinct_bias_checkpoint()
    passed = bertg4.load(task="SST", engine="mx", recipe="graph-pass-fp32", checkpoint=ck, seq_length=12)
    graph = json.load(open(os.path.join(passed.exported, "model-symbol.json")))
    params = {k.split(":", 1)[1]: v.asnumpy() for k, v in
              mx.nd.load(os.path.join(passed.exported, "model-0000.params")).items()}
    again, params2, report = graph_pass.apply(graph, params)
    assert report["qkv_prearranged"] == 0 and report["bias_gelu_split"] == 0
    assert sum(report["nodes_after"].values()) == sum(report["nodes_before"].values()) == len(graph["nodes"])
    assert set(params2) == set(params)


@needs_mxnet
def test_env_switches_follow_the_recipe_during_a_call_and_are_restored(mx, monkeypatch):
    from bertg4.mx.engine import MXNetPredictor, mxnet_env
    monkeypatch.setenv("MXNET_SAFE_ACCUMULATION", "previous")
    monkeypatch.delenv("MXNET_FC_TRUE_FP16", raising=False)
    unsafe_true = Recipe("x", "float16", safe_accumulation=False, attention="interleaved", true_fp16=True)
    with mxnet_env(unsafe_true) as values:
        assert values == {"MXNET_SAFE_ACCUMULATION": "0", "MXNET_FC_TRUE_FP16": "1"}
        assert os.environ["MXNET_FC_TRUE_FP16"] == "1"
    assert os.environ["MXNET_SAFE_ACCUMULATION"] == "previous"
    assert "MXNET_FC_TRUE_FP16" not in os.environ
    with pytest.raises(RuntimeError, match="boom"), mxnet_env(unsafe_true):
        raise RuntimeError("boom")
    assert os.environ["MXNET_SAFE_ACCUMULATION"] == "previous" and "MXNET_FC_TRUE_FP16" not in os.environ

    # what MXNet's operators see when they execute -- asynchronously, on MXNet's own threads:
    # a custom operator reads the environment there, after run() has returned to Python
    seen = []

    class EnvProbe(mx.operator.CustomOp):
        def forward(self, is_train, req, in_data, out_data, aux):
            seen.append({k: os.environ.get(k) for k in ("MXNET_SAFE_ACCUMULATION", "MXNET_FC_TRUE_FP16")})
            self.assign(out_data[0], req[0], in_data[0])

    @mx.operator.register("bertg4_env_probe")
    class EnvProbeProp(mx.operator.CustomOpProp):
        def list_arguments(self):
            return ["data"]

        def infer_shape(self, in_shape):
            return in_shape, in_shape, []

        def create_operator(self, ctx, shapes, dtypes):
            return EnvProbe()

    def block(ids, types, valid):
        return mx.nd.Custom(ids, op_type="bertg4_env_probe")

    p = MXNetPredictor(block, config=TINY, task=bertg4.tasks.get_task("SST"), recipe=Recipe(),
                       device="cpu", tokenizer=None)
    p.run(p.prepare(_tiny_batch(1)))
    assert seen == [{"MXNET_SAFE_ACCUMULATION": "1", "MXNET_FC_TRUE_FP16": "0"}]
    assert os.environ["MXNET_SAFE_ACCUMULATION"] == "previous"


@needs_mxnet
@pytest.mark.parametrize("recipe, why", [("fp16", "GPU only"), ("+true_fp16", "GPU only"),
                                         ("sdpa-fp32", "no scaled_dot_product_attention"),
                                         ("bf16", "float32 and float16"), ("all", "GPU only")])
def test_what_mxnet_cannot_do_on_a_cpu_is_not_applicable(mx, recipe, why):
    with pytest.raises(NotApplicable, match=why):
        bertg4.load("random:bert_12_768_12", "SST", "mx", recipe, seq_length=16)


@needs_mxnet
@pytest.mark.parametrize("recipe", ["baseline", "graph-pass-fp32", "int8"])
def test_mx_export_reload_gives_the_built_models_outputs(mx, tmp_path, recipe):
    from bertg4.mx import load_exported
    built = bertg4.load("embedded", "QA", "mx", recipe, seq_length=32)
    batch = built.featurize([("who wrote it?", "It was written by Jane in 1990.")] * 3).batch
    built.export(str(tmp_path))
    again = load_exported(str(tmp_path))
    assert (again.task.name, again.recipe.name, again.seq_length) == ("QA", recipe, 32)
    np.testing.assert_array_equal(again(batch), built(batch))
    m = json.loads((tmp_path / "bertg4_export.json").read_text())
    m["engine"] = "pt"
    (tmp_path / "bertg4_export.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="not an MXNet bertg4 export"):
        load_exported(str(tmp_path))


@needs_mxnet
def test_deploy_engine_mx_exports_reloads_and_only_infers(mx, tmp_path):
    from bertg4.deploy import deploy
    out = tmp_path / "export"
    quiet = dict(batch_size=8, seq_length=32, max_iters=1, warmup=0, max_eval=8, progress=False,
                 log=lambda *a: None)
    rec = deploy(model="embedded", engine="mx", recipe="graph-pass-fp32", output_dir=str(out), **quiet)
    assert rec["engine"] == "mx" and rec["exported_model"] == str(out) and rec["recipe"] == "graph-pass-fp32"
    assert {"model-symbol.json", "model-0000.params", "bertg4_export.json", "vocab.txt"} <= set(os.listdir(out))
    again = deploy(engine="mx", only_infer=True, exported_model=str(out), output_dir=str(tmp_path / "again"),
                   **quiet)
    assert again["engine"] == "mx" and again["recipe"] == "graph-pass-fp32"
    assert again["accuracy"] == rec["accuracy"]


@pytest.mark.parametrize("engine", ["pt", pytest.param("mx", marks=needs_mxnet)])
def test_int8_agrees_with_fp32(engine, sst2_dev, measured):
    """Sentence embeddings of the embedded model: INT8 vs fp32 cosine similarity."""
    fp32 = bertg4.load("embedded", "embedding", engine, "baseline", seq_length=64)
    int8 = bertg4.load("embedded", "embedding", engine, "int8", seq_length=64)
    batch = fp32.featurize(sst2_dev.first[:64])
    a, b = fp32.infer(batch, 32), int8.infer(batch, 32)
    cosine = (a * b).sum(-1)  # both L2-normalised
    measured(f"{engine} int8 vs fp32 embedding cosine (64 SST-2 dev sentences)",
             f"min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    assert cosine.min() > 0.9 and cosine.mean() > 0.95
    assert np.abs(a - b).max() > 1e-4  # it really is a different (quantized) computation


@needs_mxnet
def test_add_bias_gelu_leaves_a_fully_connected_with_other_readers_alone(mx):
    from bertg4.mx import graph_pass
    x = mx.sym.var("data")
    fc = mx.sym.FullyConnected(x, num_hidden=4, flatten=False, name="ffn_1")
    out = mx.sym.Group([mx.sym.LeakyReLU(fc, act_type="gelu"), fc * 2])  # fc also read elsewhere
    params = {"ffn_1_weight": np.ones((4, 4), np.float32), "ffn_1_bias": np.arange(4, dtype=np.float32)}
    graph, _, report = graph_pass.apply(json.loads(out.tojson()), params)
    assert report["bias_gelu_split"] == 0
    lone = mx.sym.LeakyReLU(mx.sym.FullyConnected(x, num_hidden=4, flatten=False, name="ffn_1"),
                            act_type="gelu")
    graph, new_params, report = graph_pass.apply(json.loads(lone.tojson()), params)
    assert report["bias_gelu_split"] == 1 and set(new_params) == set(params)
    # and the rewritten graph computes the same thing
    data = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)

    def run(sym_json):
        sym = mx.sym.load_json(json.dumps(sym_json))
        args = {"data": mx.nd.array(data), **{k: mx.nd.array(v) for k, v in params.items()}}
        return sym.bind(mx.cpu(), args).forward()[0].asnumpy()

    np.testing.assert_allclose(run(graph), run(json.loads(lone.tojson())), atol=1e-6)


@needs_mxnet
def test_mha_interleave_ignores_graphs_without_gluonnlps_qkv_layout(mx, tmp_path):
    """The naive-attention graph (three projections) has no fused QKV to prearrange."""
    from bertg4.mx import graph_pass
    naive = bertg4.load(task="SST", engine="mx", recipe="baseline", checkpoint=_distinct_bias_checkpoint(),
                        seq_length=12)
    folder = str(tmp_path)
    naive.export(folder)
    graph = json.load(open(os.path.join(folder, "model-symbol.json")))
    params = {k.split(":", 1)[1]: v.asnumpy() for k, v in mx.nd.load(os.path.join(folder, "model-0000.params")).items()}
    _, _, report = graph_pass.apply(graph, params)
    assert report["qkv_prearranged"] == 0 and report["bias_gelu_split"] == TINY.num_layers


@needs_mxnet
def test_longest_runs_one_static_executor_per_length_bucket_with_fixed_outputs(embedded, sst2_dev, tmp_path):
    """Length buckets 16/32/64 at seq 64: the outputs ``fixed`` gives on every row (fp32, CPU),
    for the built model and for its export reloaded."""
    from bertg4.mx.engine import length_buckets, load_exported
    texts = sst2_dev.first[:37] + ["a", "ok then", "word " * 80]  # length 3, 4 and a truncated row
    p = bertg4.load(task="SST", engine="mx", checkpoint=embedded, seq_length=64)
    assert length_buckets(64) == (16, 32, 64) and length_buckets(48) == (16, 32, 48)
    assert [p.padded_length(n, 64) for n in (1, 16, 17, 33, 64)] == [16, 16, 32, 64, 64]
    assert p.padded_length(40, 48) == 48 and p.padded_length(5, 12) == 12
    batch = p.featurize(texts)
    fixed = p.infer(batch, 8, padding="fixed")
    fixed_waste = p.last_infer_stats["padding_waste"]
    longest = p.infer(batch, 8, padding="longest")
    assert np.abs(longest - fixed).max() < 1e-5
    assert (longest.argmax(-1) == fixed.argmax(-1)).all()
    assert set(p._executors) == {16, 32, 64}  # one executor per bucket used, fixed's included
    assert p.last_infer_stats["padding_waste"] < fixed_waste
    assert p.default_padding == "longest"
    with pytest.raises(NotApplicable, match="MXNet 1.9"):
        p.infer(batch, 8, padding="packed")
    p.export(str(tmp_path / "exp"))
    again = load_exported(str(tmp_path / "exp"))
    assert np.abs(again.infer(batch, 8, padding="longest") - fixed).max() < 1e-5
