"""The optimization ladder on the CPU: recipes, safe accumulation, interleaved attention,
true FP16 (its switch and its emulation) and the graph pass."""
import dataclasses

import numpy as np
import pytest
import torch

import bertg4
from bertg4.checkpoint import add_head, interleave_qkv as np_interleave, random_weights
from bertg4.config import BertConfig
from bertg4.pt import graph_pass, numerics
from bertg4.pt.attention import interleave_qkv, interleaved_qk, interleaved_valatt
from bertg4.pt.model import ForClassification, ForEncoding, load_weights
from bertg4.recipe import NotApplicable, Recipe, get_recipe, ladder
from bertg4.text import Batch

SMALL = BertConfig(3, 64, 4, 128, 100, 128, name="small")


def _batch(cfg, n=6, L=24, seed=0, lengths=None):
    rng = np.random.default_rng(seed)
    valid = np.asarray(lengths if lengths is not None else rng.integers(1, L + 1, n))
    ids = rng.integers(5, cfg.vocab_size, (len(valid), L))
    types = (np.arange(L)[None, :] >= valid[:, None] // 2).astype(np.int64)
    ids[np.arange(L)[None, :] >= valid[:, None]] = 0
    return Batch(ids, types, valid)


def _ckpt(cfg=SMALL, seed=0, distinct_biases=True):
    w = random_weights(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    if distinct_biases:  # make every bias and LayerNorm non-trivial and q/k/v biases distinct
        for k in w:
            if k.endswith(".bias") or "LayerNorm" in k:
                w[k] = w[k] + rng.normal(0, 0.1, w[k].shape).astype(np.float32)
    ck = bertg4.Checkpoint(cfg, w, None, source="test")
    add_head(ck, "classifier", 3, seed=seed)
    return ck


# ----------------------------------------------------------------------------- recipes

def test_ladder_adds_one_switch_per_rung():
    rungs = ladder()
    assert [r.name for r in rungs] == ["baseline", "fp16", "+safe_accumulation", "+interleaved",
                                       "+true_fp16", "+graph_pass", "all"]
    for before, after in zip(rungs, rungs[1:]):
        changed = {k for k in dataclasses.asdict(after) if k != "name"
                   and getattr(after, k) != getattr(before, k)}
        assert 1 <= len(changed) <= 2, (after.name, changed)  # fp16 sets dtype and unsafe reductions
    assert rungs[-1].switches() == {"dtype": "float16", "attention": "interleaved", "true_fp16": True,
                                    "graph_pass": True, "cuda_graphs": True}
    assert get_recipe("+interleaved").attention == "interleaved"


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype="float32", true_fp16=True), "needs dtype float16"),
    (dict(dtype="float16", attention="sdpa", safe_accumulation=False), "always reduce the softmax in fp32"),
    (dict(graph_pass=True), "needs attention='interleaved'"),
    (dict(attention="flash"), "unknown attention"),
])
def test_inconsistent_recipes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recipe("x", **kwargs)


@pytest.mark.parametrize("rung", ["+true_fp16", "+graph_pass", "all"])
def test_gpu_only_rungs_say_not_applicable_on_cpu(rung):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(NotApplicable, match="CUDA"):
        bertg4.load(task="SST", recipe=rung, checkpoint=_ckpt())


def test_reference_engine_refuses_what_it_cannot_do():
    with pytest.raises(NotApplicable, match="runs as shipped"):
        bertg4.load(task="SST", engine="hf", recipe="+interleaved", checkpoint=_ckpt())


# ----------------------------------------------------------------------------- safe accumulation

def test_fp16_sum_really_accumulates_in_fp16():
    x = torch.full((4096,), 1.0, dtype=torch.float16)
    assert numerics.fp16_sum(x).item() == 4096.0  # exact: every partial sum is representable
    y = torch.full((1000,), 70.0, dtype=torch.float16)
    assert numerics.fp16_sum(y).isinf()  # 70,000 > 65504: the fp16 accumulator overflows
    assert y.sum().item() == 70000.0 or y.sum().isinf()  # torch's own sum accumulates in fp32
    z = torch.rand(777, dtype=torch.float16)
    assert abs(numerics.fp16_sum(z).item() - z.double().sum().item()) < 0.5


def test_layer_norm_on_large_residuals():
    """|x| ~ 30 over 768 features: sum of squares ~ 6.9e5 overflows fp16, not fp32."""
    torch.manual_seed(0)
    x32 = torch.randn(8, 768) * 30
    w, b = torch.rand(768) + 0.5, torch.randn(768)
    ref = torch.nn.functional.layer_norm(x32, (768,), w, b, 1e-12)
    x16, w16, b16 = x32.half(), w.half(), b.half()
    safe = numerics.layer_norm(x16, w16, b16, 1e-12, safe=True).float()
    unsafe = numerics.layer_norm(x16, w16, b16, 1e-12, safe=False).float()
    assert torch.isfinite(safe).all() and (safe - ref).abs().max() < 0.02
    assert not torch.isfinite(unsafe).all() or (unsafe - ref).abs().max() > 0.5


def test_softmax_over_many_keys():
    """512 keys with near-equal large scores: the fp16 denominator loses precision."""
    torch.manual_seed(0)
    s16 = (40 + torch.randn(64, 512) * 0.5).half()
    ref = torch.softmax(s16.double(), -1)  # exact softmax of the same fp16 scores
    safe = numerics.softmax(s16, safe=True).double()
    unsafe = numerics.softmax(s16, safe=False).double()
    err_safe = ((safe - ref).abs() / ref).max().item()
    err_unsafe = ((unsafe - ref).abs() / ref).max().item()
    assert err_safe < 2e-3
    assert err_unsafe > 2 * err_safe


def test_model_with_and_without_safe_accumulation():
    """Large-magnitude residuals (scaled embeddings): the unsafe fp16 model breaks, the safe one holds."""
    ck = _ckpt()
    for name in ("embeddings.LayerNorm.weight",):
        ck.weights[name] = ck.weights[name] * 40  # residual stream of magnitude ~40
    batch = _batch(SMALL, L=32)
    ref = bertg4.load(task="SST", checkpoint=ck, recipe="baseline", seq_length=32)(batch)
    safe = bertg4.load(task="SST", checkpoint=ck, recipe="+safe_accumulation", seq_length=32)(batch)
    unsafe = bertg4.load(task="SST", checkpoint=ck, recipe="fp16", seq_length=32)(batch)
    def rel(x):
        return np.linalg.norm(x - ref) / np.linalg.norm(ref)

    assert np.isfinite(safe).all() and rel(safe) < 0.02
    # the variance overflows to inf, rsqrt(inf) = 0: every LayerNorm output collapses to its bias
    assert (~np.isfinite(unsafe)).any() or rel(unsafe) > 0.5


# ----------------------------------------------------------------------------- interleaved attention

def test_interleave_matches_numpy_helper():
    q, k, v = (torch.randn(12, 5) for _ in range(3))
    np.testing.assert_array_equal(interleave_qkv(q, k, v, 3).numpy(),
                                  np_interleave(q.numpy(), k.numpy(), v.numpy(), 3))


def test_strided_views_do_not_copy():
    L, B, heads, d = 7, 3, 4, 5
    proj = torch.randn(L, B, 3 * heads * d)
    scores = interleaved_qk(proj, heads)
    # reference by explicit copies
    p = proj.view(L, B, heads, 3, d)
    q, k, v = (p[:, :, :, j].permute(1, 2, 0, 3).reshape(B * heads, L, d) for j in range(3))
    torch.testing.assert_close(scores, q @ k.transpose(1, 2) / d ** 0.5)
    probs = torch.softmax(scores, -1)
    ctx = interleaved_valatt(proj, probs, heads)
    ref = (probs @ v).view(B, heads, L, d).permute(2, 0, 1, 3).reshape(L, B, heads * d)
    torch.testing.assert_close(ctx, ref)
    from bertg4.pt.attention import _head_view
    assert _head_view(proj, heads, 2).untyped_storage().data_ptr() == proj.untyped_storage().data_ptr()


def test_scores_mask_keys_past_valid_length():
    """The scores GEMM masks keys past each row's length (-inf), and leaves every other score
    exactly as the unmasked GEMM gives it."""
    L, B, heads, d = 5, 2, 3, 4
    proj = torch.randn(L, B, 3 * heads * d)
    plain = interleaved_qk(proj, heads)
    masked = interleaved_qk(proj, heads, torch.tensor([1, 4]))
    assert torch.isinf(masked[:3, :, 1:]).all() and (masked[:3, :, 1:] < 0).all()
    assert torch.isinf(masked[3:, :, 4:]).all()
    assert torch.equal(masked[:3, :, :1], plain[:3, :, :1]) and torch.equal(masked[3:, :, :4], plain[3:, :, :4])
    probs = torch.softmax(masked, -1)
    assert (probs[:3, :, 1:] == 0).all() and torch.allclose(probs[:3, :, 0], torch.ones(3, L))
    assert (probs[3:, :, 4:] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, L))
    # at BERT's shapes (the BLAS's blocked kernels, not the small-matrix loop)
    L, B, heads, d = 128, 3, 12, 64
    proj, lengths = torch.randn(L, B, 3 * heads * d), torch.tensor([128, 37, 1])
    plain, masked = interleaved_qk(proj, heads), interleaved_qk(proj, heads, lengths)
    keep = torch.arange(L)[None, None, :] < lengths.repeat_interleave(heads)[:, None, None]
    keep = keep.expand_as(plain)
    assert torch.equal(masked[keep], plain[keep]) and torch.isneginf(masked[~keep]).all()


@pytest.mark.parametrize("lengths", [None, [1, 1, 1], [1, 24, 7, 2], [24, 24]])
def test_interleaved_equals_naive(lengths):
    ck = _ckpt()
    batch = _batch(SMALL, L=24, lengths=lengths, seed=3)
    naive = load_weights(ForEncoding(SMALL), ck.weights).eval()
    inter = load_weights(ForEncoding(SMALL, attention="interleaved"), ck.weights).eval()
    sdpa = load_weights(ForEncoding(SMALL, attention="sdpa"), ck.weights).eval()
    args = [torch.from_numpy(a) for a in (batch.input_ids, batch.token_types, batch.valid_length)]
    valid = torch.arange(24)[None, :] < args[2][:, None]
    with torch.no_grad():
        (a, pa), (b, pb), (c, pc) = naive(*args), inter(*args), sdpa(*args)
    assert (a - b)[valid].abs().max() < 1e-5 and (pa - pb).abs().max() < 1e-5
    assert (a - c)[valid].abs().max() < 1e-5


def test_interleaved_on_the_embedded_checkpoint(embedded, sst2_dev, measured):
    naive = bertg4.load(task="embedding", checkpoint=embedded, recipe="baseline")
    inter = bertg4.load(task="embedding", checkpoint=embedded, recipe="interleaved-fp32")
    batch = naive.featurize(sst2_dev.first[:128])
    err = np.abs(naive.infer(batch, 32) - inter.infer(batch, 32)).max()
    measured("interleaved vs naive attention, MiniLM embeddings on 128 SST-2 dev sentences, max-abs",
             f"{err:.2e}")
    assert err < 1e-5


# ----------------------------------------------------------------------------- true FP16

def test_fp16_accumulation_switch_is_restored():
    backend = torch.backends.cuda.matmul
    before = backend.allow_fp16_accumulation
    with numerics.fp16_accumulation():
        assert backend.allow_fp16_accumulation is True
    assert backend.allow_fp16_accumulation == before
    with pytest.raises(RuntimeError, match="boom"):
        with numerics.fp16_accumulation():
            raise RuntimeError("boom")
    assert backend.allow_fp16_accumulation == before


def test_emulated_fp16_accumulation_error_grows_with_inner_dimension():
    torch.manual_seed(0)
    errors = []
    for k in (64, 1024, 8192):
        a, b = torch.rand(16, k), torch.rand(k, 16)
        ref = (a.double() @ b.double())
        emu = numerics.emulated_fp16_matmul(a.half(), b.half()).double()
        f32 = (a.half().float() @ b.half().float()).double()
        errors.append(((emu - ref).abs() / ref).max().item())
        assert ((f32 - ref).abs() / ref).max() < 1e-3
    assert errors[0] < errors[1] < errors[2] and errors[2] > 1e-2


# ----------------------------------------------------------------------------- graph pass

def _interleaved_model(ck):
    return load_weights(ForClassification(SMALL, 3, attention="interleaved"), ck.weights).eval()


def test_graph_pass_keeps_outputs_and_is_idempotent():
    ck = _ckpt()
    model = _interleaved_model(ck)
    gm, report = graph_pass.apply(model)
    assert report["bias_gelu_fused"] == SMALL.num_layers
    assert report["qkv_prearranged"] == 2 * SMALL.num_layers  # a weight and a bias per layer
    before, after = report["nodes_before"], report["nodes_after"]
    assert before["call_function:interleave_qkv"] == 2 * SMALL.num_layers
    assert "call_function:interleave_qkv" not in after and "call_function:gelu" not in after
    assert after["call_function:bias_gelu"] == SMALL.num_layers
    batch = _batch(SMALL, L=24, lengths=[1, 24, 9, 3])
    args = [torch.from_numpy(a) for a in (batch.input_ids, batch.token_types, batch.valid_length)]
    with torch.no_grad():
        torch.testing.assert_close(gm(*args), model(*args), atol=1e-6, rtol=0)
    again, report2 = graph_pass.apply(gm)
    assert report2["bias_gelu_fused"] == 0 and report2["qkv_prearranged"] == 0
    assert report2["nodes_after"] == after


def test_graph_pass_puts_each_bias_in_its_own_slots():
    ck = _ckpt()
    h, heads, d = SMALL.hidden_size, SMALL.num_heads, SMALL.head_dim
    # deliberately distinct, recognisable q/k/v biases in layer 1
    for j, proj in enumerate(("query", "key", "value")):
        ck.weights[f"encoder.layer.1.attention.self.{proj}.bias"] = np.full(h, 10.0 * (j + 1), np.float32)
    gm, _ = graph_pass.apply(_interleaved_model(ck))
    attn = gm.get_submodule("bert.layers.1.attn")
    fused = attn.qkv_bias.detach().view(heads, 3, d)
    assert (fused[:, 0] == 10).all() and (fused[:, 1] == 20).all() and (fused[:, 2] == 30).all()
    w = attn.qkv_weight.detach().view(heads, 3, d, h)
    v = torch.from_numpy(ck.weights["encoder.layer.1.attention.self.value.weight"]).view(heads, d, h)
    torch.testing.assert_close(w[:, 2], v, rtol=0, atol=0)


def test_graph_pass_recipe_exports_and_reloads(tmp_path):
    from bertg4.pt import load_exported
    ck = _ckpt()
    recipe = get_recipe("graph-pass-fp32")
    p = bertg4.load(task="SST", checkpoint=ck, recipe=recipe, seq_length=24)
    assert p.graph_report["qkv_prearranged"] == 2 * SMALL.num_layers
    p.export(str(tmp_path))
    again = load_exported(str(tmp_path))
    assert again.recipe == recipe
    batch = _batch(SMALL, L=24)
    np.testing.assert_allclose(again(batch), p(batch), atol=1e-6, rtol=0)
    base = bertg4.load(task="SST", checkpoint=ck, seq_length=24)
    np.testing.assert_allclose(p(batch), base(batch), atol=1e-5, rtol=0)


def test_every_cpu_rung_stays_close_to_fp32(embedded, sst2_dev, measured):
    """Every rung that runs on a CPU, on real sentences, against the fp32 baseline."""
    rungs = [r for r in ladder() if not (r.true_fp16 or r.cuda_graphs)] + \
        [get_recipe("graph-pass-fp32"), get_recipe("sdpa-fp16")]
    base = bertg4.load(task="embedding", checkpoint=embedded, recipe="baseline", seq_length=64)
    batch = base.featurize(sst2_dev.first[:64])
    ref = base.infer(batch, 32)
    for r in rungs:
        out = bertg4.load(task="embedding", checkpoint=embedded, recipe=r, seq_length=64).infer(batch, 32)
        rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        measured(f"rung {r.name} ({r.dtype}) vs fp32 embeddings on CPU, relative error", f"{rel:.2e}")
        assert np.isfinite(out).all()
        assert rel < (1e-5 if r.dtype == "float32" else 5e-3), r.name
