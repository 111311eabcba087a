"""The ``onednn-fp32`` rung: the graph pass carried on to a CPU. Every Linear runs on oneDNN
with its weight prepacked once, bias+GELU inside the FFN's first Linear; answers equal to
the graph pass's own, refused where it cannot run or be exported. ``onednn-int8``: the same
graph on oneDNN's INT8 Linear, its arithmetic checked against a float computation on the same
integer codes, its answers against float32's."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bertg4
from bertg4.pt import engine as E
from bertg4.pt import onednn
from bertg4.pt.graph_pass import _fetch, bias_gelu
from bertg4.recipe import NotApplicable, Recipe, get_recipe
from bertg4.system import cpu_has_vnni

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN prepacked Linear")


@pytest.fixture(scope="module")
def texts(sst2_dev):
    return list(sst2_dev.first[:20]) + ["ok", "a", "the film , the film , the film"]


@pytest.mark.parametrize("task", ["SST", "embedding", "QA"])
def test_answers_equal_the_graph_pass(embedded, texts, task):
    rows = list(zip(texts[:8], texts[8:16])) if task == "QA" else texts
    ref = bertg4.load("embedded", task=task, recipe="graph-pass-fp32", seq_length=64, checkpoint=embedded)
    new = bertg4.load("embedded", task=task, recipe="onednn-fp32", seq_length=64, checkpoint=embedded)
    batch = ref.featurize(rows)
    batch = batch.batch if hasattr(batch, "batch") else batch
    for mode in ("fixed", "packed"):
        a = np.asarray(ref.run_batch(batch, mode), np.float64)
        b = np.asarray(new.run_batch(batch, mode), np.float64)
        finite = np.isfinite(a)  # QA: positions outside the context are -inf in both
        assert (finite == np.isfinite(b)).all() and (a[~finite] == b[~finite]).all()
        assert np.abs(np.where(finite, a - b, 0.0)).max() <= 1e-5 * max(1.0, np.abs(a[finite]).max()), (task, mode)


def test_both_graphs_share_one_prearranged_qkv(embedded):
    """The padded and the packed graph hold one fused QKV tensor per layer, not one each: a
    Linear kept float32 by its weight's identity stays float32 in both."""
    p = bertg4.load("embedded", task="SST", recipe="graph-pass-fp32", checkpoint=embedded)
    for layer in range(p.config.num_layers):
        a = _fetch(p.module, f"bert.layers.{layer}.attn.qkv_weight")
        assert a is _fetch(p.packed_module, f"inner.bert.layers.{layer}.attn.qkv_weight")


def test_every_linear_is_prepacked_and_gelu_fused(embedded):
    p = bertg4.load("embedded", task="SST", recipe="onednn-fp32", checkpoint=embedded)
    layers = p.config.num_layers
    report = p.graph_report
    assert report["onednn_linear_gelu"] == layers and report["bias_gelu_fused"] == layers
    # per layer: QKV, attention output, FFN output; then pooler and classifier
    assert report["onednn_linear"] == 3 * layers + 2
    for gm in (p.module, p.packed_module):
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert F.linear not in targets and bias_gelu not in targets and F.gelu not in targets
        assert not [n for n in gm.graph.nodes if n.op == "call_module"
                    and isinstance(gm.get_submodule(n.target), torch.nn.Linear)]
        assert targets.count(onednn.linear_gelu) == layers
    assert any("oneDNN" in n for n in p.notes)
    # the float weights the prepacked copies replace are gone: 2-D tensors left are the embeddings
    left = {n for gm in (p.module, p.packed_module) for n, t in gm.state_dict(keep_vars=True).items()
            if t.dim() == 2 and not n.startswith("onednn_w_")}
    assert left and all(n.endswith("_embed.weight") for n in left), sorted(left)


@pytest.mark.parametrize("name,on_gpu", [("onednn-fp32", "CPU kernel"),
                                          pytest.param("onednn-int8", "run on a CPU", marks=pytest.mark.skipif(
                                              not onednn.available(int8=True), reason="no oneDNN INT8 Linear"))])
def test_refused_where_it_cannot_run(embedded, tmp_path, name, on_gpu):
    with pytest.raises(NotApplicable, match=on_gpu):
        E.check_applicable(get_recipe(name), torch.device("cuda"))
    with pytest.raises(NotApplicable, match="opaque"):
        bertg4.load("embedded", task="SST", recipe=name, checkpoint=embedded).export(str(tmp_path / "x"))
    for engine in ("hf", "ort"):
        with pytest.raises(NotApplicable):
            bertg4.load("embedded", task="SST", engine=engine, recipe=name, checkpoint=embedded)


def test_switches_it_needs():
    with pytest.raises(ValueError, match="needs dtype float32 and graph_pass"):
        Recipe("x", attention="interleaved", onednn=True)
    with pytest.raises(ValueError, match="needs dtype float32 and graph_pass"):
        Recipe("x", "float16", attention="interleaved", graph_pass=True, onednn=True)
    with pytest.raises(ValueError, match="after the graph pass it needs onednn"):
        Recipe("x", attention="interleaved", graph_pass=True, int8=True)


# ---- onednn-int8 ---------------------------------------------------------------------------

int8_only = pytest.mark.skipif(not onednn.available(int8=True), reason="this torch has no oneDNN INT8 Linear")


@int8_only
@pytest.mark.parametrize("qmax", [255, 127])
def test_input_quantization_is_one_scale_over_the_range(qmax):
    torch.manual_seed(0)
    x = torch.randn(37, 96) * 3 + 0.5
    codes, scale, zero = onednn.quantize_input(x, qmax)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert 0 <= zero <= qmax and int(codes.max()) <= qmax
    assert scale == pytest.approx((float(x.max()) - float(x.min())) / qmax)
    back = (codes.float() - zero) * scale
    assert (back - x).abs().max() <= 0.5 * scale * (1 + 1e-5)
    if qmax == 255:  # the same codes as PyTorch's own dynamic quantization
        ref = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)
        assert torch.equal(codes, ref.int_repr()) and zero == ref.q_zero_point()
    pos, _, zp = onednn.quantize_input(torch.rand(4, 8) + 1.0, qmax)  # the range always holds 0
    assert zp == 0 and int(pos.min()) > 0
    zeros, s0, z0 = onednn.quantize_input(torch.zeros(3, 5), qmax)
    assert (zeros == z0).all() and s0 > 0
    tiny, st, _ = onednn.quantize_input(torch.full((2, 3), 1e-44), qmax)  # 1 / (range / qmax) overflows
    assert st == 1.0 and (tiny == 0).all()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            onednn.quantize_input(torch.tensor([[0.5, bad]]), qmax)


@int8_only
@pytest.mark.parametrize("gelu", [False, True])
def test_int8_linear_is_integer_arithmetic_on_its_codes(gelu):
    """oneDNN's result equals float arithmetic on the same integer codes (the only error left
    is float32 summation order), so the kernel adds no error of its own to quantization's -- at
    the activation codes the engine takes (0..127 on a CPU without VNNI, where 8-bit codes would
    overflow the kernel's 16-bit sums of product pairs)."""
    qmax = 255 if cpu_has_vnni() else 127
    torch.manual_seed(1)
    x, w, b = torch.randn(2, 9, 64), torch.randn(48, 64) * 0.1, torch.randn(48)
    codes, w_scale, w_zero = onednn.quantize_weight(w)
    assert codes.dtype == torch.int8 and (w_zero == 0).all()
    assert torch.allclose(codes.float() * w_scale[:, None], w, atol=float(w_scale.max()) * 0.5 + 1e-7)
    packed = torch.ops.onednn.qlinear_prepack(codes, None)
    y = (onednn.qlinear_gelu if gelu else onednn.qlinear)(x, packed, w_scale, w_zero, b, qmax)
    q, s, z = onednn.quantize_input(x.reshape(-1, 64), qmax)
    exact = ((q.double() - z) * s) @ (codes.double() * w_scale.double()[:, None]).T + b.double()
    exact = F.gelu(exact) if gelu else exact
    assert y.shape == (2, 9, 48)
    assert (y.double().reshape(-1, 48) - exact).abs().max() <= 1e-4 * exact.abs().max()


@int8_only
def test_int8_graph_keeps_the_outlier_linear_float(embedded):
    p = bertg4.load("embedded", task="SST", recipe="onednn-int8", checkpoint=embedded)
    layers = p.config.num_layers
    report = p.graph_report
    # per layer: QKV, attention output, FFN in (+GELU) and out; then pooler and classifier
    assert report["onednn_qlinear_gelu"] + report["onednn_linear_gelu"] == layers
    assert sum(report[k] for k in ("onednn_linear", "onednn_qlinear")) == 3 * layers + 2
    # the embedded MiniLM's strongest input outliers feed layer 0's FFN output (GELU outputs)
    assert report["onednn_linear"] == 1 and report["onednn_linear_gelu"] == 0
    kept = [n for n in p.module.graph.nodes if n.target is onednn.linear]
    assert [n.args[1].target for n in kept] == ["onednn_w_bert_layers_0_ffn2_weight"]
    for gm in (p.module, p.packed_module):
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert F.linear not in targets and bias_gelu not in targets and F.gelu not in targets
        assert targets.count(onednn.qlinear_gelu) == layers
    assert any("kept float32: bert.layers.0.ffn2" in n for n in p.notes)
    # the packed graph keeps the same Linear float32 and shares every prepacked weight
    kept_packed = [n for n in p.packed_module.graph.nodes if n.target is onednn.linear]
    assert [n.args[1].target for n in kept_packed] == ["onednn_w_inner_bert_layers_0_ffn2_weight"]
    for name in ("onednn_w_bert_layers_0_attn_qkv_weight", "onednn_w_bert_layers_3_ffn1_weight"):
        assert getattr(p.module, name) is getattr(p.packed_module, "onednn_w_inner_" + name[len("onednn_w_"):])
    ratios = onednn.input_outliers(
        bertg4.load("embedded", task="SST", recipe="graph-pass-fp32", checkpoint=embedded).module,
        (torch.randint(1000, 2000, (2, 12)), torch.zeros(2, 12, dtype=torch.long), torch.tensor([12, 7])))
    assert len(ratios) == 4 * layers + 2 and "bert.layers.0.attn.qkv" in ratios


@int8_only
def test_int8_answers_stay_close_to_float32(embedded, sst2_dev):
    """Embeddings of 64 SST-2 dev sentences against float32's, in every padding mode: as close
    as PyTorch's dynamic INT8 (``int8``) gets (measured with VNNI: mean cosine 0.993-0.994 for
    both; on a 2-core AMD EPYC without VNNI, where both take 7-bit activations: mean 0.978-0.979,
    lowest 0.955-0.960)."""
    texts = list(sst2_dev.first[:64])
    ref = bertg4.load("embedded", task="embedding", recipe="graph-pass-fp32", seq_length=64, checkpoint=embedded)
    rungs = {r: bertg4.load("embedded", task="embedding", recipe=r, seq_length=64, checkpoint=embedded)
             for r in ("int8", "onednn-int8")}
    batch = ref.featurize(texts)
    a = ref.infer(batch, 32, padding="fixed")
    for mode in ("fixed", "longest", "packed"):
        cos = {r: (a * q.infer(batch, 32, padding=mode)).sum(-1) for r, q in rungs.items()}  # unit vectors
        assert cos["onednn-int8"].min() >= (0.98 if cpu_has_vnni() else 0.95), (mode, cos["onednn-int8"].min())
        if not cpu_has_vnni():  # 7 bits for both: the lowest as PyTorch's INT8 gets
            assert cos["onednn-int8"].min() >= cos["int8"].min() - 0.01, (mode, cos)
        assert cos["onednn-int8"].mean() >= cos["int8"].mean() - 0.002, (mode, cos)
        assert cos["onednn-int8"].min() < 0.9999  # a different computation, not the float one
