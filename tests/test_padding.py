"""Padding modes (fixed, longest, packed) give fixed padding's outputs, row for row, in the
caller's order; exports reload with variable lengths; bad switches are named."""
import warnings

import numpy as np
import pytest

import bertg4
from bertg4 import data as D
from bertg4.padding import MODES, check_padding, length_batches, padding_waste, trim
from bertg4.recipe import RECIPES, NotApplicable, Recipe
from bertg4.text import Batch, TruncationWarning

SHORT = ["a", "b c", "b c d"]  # [CLS] a [SEP]: 3 tokens; then 4 and 5


@pytest.fixture(scope="module")
def sentences(sst2_dev):
    return list(sst2_dev.first[:64]) + SHORT


def load(embedded, task, recipe="baseline", **kw):
    return bertg4.load("embedded", task=task, recipe=recipe, checkpoint=embedded, **kw)


def assert_modes_agree(p, batch, batch_size=16, atol=1e-5):
    fixed = p.infer(batch, batch_size, padding="fixed").astype(np.float64)
    for mode in p.padding_modes:
        out = p.infer(batch, batch_size, padding=mode)
        assert out.shape == fixed.shape and out.dtype == np.float32
        assert p.last_infer_stats["padding"] == mode and p.last_infer_stats["rows"] == len(batch)
        if p.task.kind == "qa":  # positions no mode but fixed computes are -inf
            valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
            assert np.isneginf(out[~valid]).all() if mode != "fixed" else True
            out, fixed_cmp = np.where(valid[..., None], out, 0), np.where(valid[..., None], fixed, 0)
        else:
            fixed_cmp = fixed
        assert np.isfinite(out).all()
        err = np.abs(out - fixed_cmp).reshape(len(batch), -1).max(1)  # every row
        assert err.max() <= atol, f"{mode}: row {int(err.argmax())} differs by {err.max():.2e}"
    return fixed


@pytest.mark.parametrize("task", ["SST", "embedding"])
def test_sentences_agree_with_fixed(embedded, sentences, task):
    p = load(embedded, task)
    batch = p.featurize(sentences)
    assert batch.valid_length[-3:].tolist() == [3, 4, 5]
    fixed = assert_modes_agree(p, batch, batch_size=32)
    if task == "SST":
        assert (p.predict(sentences, 32, padding="packed") == fixed.argmax(-1)).all()
    p.infer(batch, 16, padding="packed")
    stats = p.last_infer_stats
    assert stats["computed_tokens"] == stats["real_tokens"] == int(batch.valid_length.sum())
    assert stats["padding_waste"] == 1.0
    p.infer(batch, 16, padding="fixed")
    assert p.last_infer_stats["padding_waste"] == pytest.approx(len(batch) * 128 / batch.valid_length.sum())


def test_order_is_restored_and_single_rows(embedded, sentences):
    p = load(embedded, "SST")
    batch = p.featurize(sentences[:9] + SHORT)
    perm = np.random.default_rng(0).permutation(len(batch))
    ref = p.infer(batch, 8, padding="fixed")
    for mode in ("longest", "packed"):
        np.testing.assert_allclose(p.infer(batch[perm], 8, padding=mode), ref[perm], atol=1e-5, rtol=0)
        np.testing.assert_allclose(p.infer(batch, 1, padding=mode), ref, atol=1e-5, rtol=0)  # one-row batches
        longest = int(batch.valid_length.argmax())
        alone = batch[longest]
        np.testing.assert_allclose(p.run_batch(alone, mode), ref[longest:longest + 1], atol=1e-5, rtol=0)


def test_pairs_with_truncation_agree(embedded, sentences):
    p = load(embedded, "MRPC", seq_length=24)
    pairs = list(zip(sentences[:24], sentences[24:48]))
    with pytest.warns(TruncationWarning):
        batch = p.featurize(pairs)
    assert batch.truncated.any() and (batch.valid_length == 24).any()
    assert_modes_agree(p, batch, batch_size=8)
    with pytest.warns(TruncationWarning):
        labels = {m: p.predict(pairs, 8, padding=m) for m in MODES}
    assert (labels["longest"] == labels["fixed"]).all() and (labels["packed"] == labels["fixed"]).all()


@pytest.mark.parametrize("qa_set", [D.squad_small, D.sample_qa])
def test_qa_windows_agree(embedded, qa_set):
    qa = qa_set() if qa_set is D.sample_qa else qa_set("dev")
    p = load(embedded, "QA", seq_length=96)
    pairs = list(zip(qa.questions, qa.contexts))[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        feats = p.featurize(pairs)
        answers = {m: p.predict(pairs, 8, padding=m) for m in MODES}
    assert feats.batch.valid_length.min() < feats.batch.valid_length.max()
    assert_modes_agree(p, feats.batch, batch_size=8)
    assert answers["longest"] == answers["fixed"] and answers["packed"] == answers["fixed"]


@pytest.mark.parametrize("name", [n for n in RECIPES if n != "compile-fp32"])
def test_every_cpu_rung_packed_agrees_with_fixed(embedded, sentences, name):
    """fp32 rungs: within 1e-5; fp16/bf16 within their precision; int8 quantizes activations
    with one scale per batch tensor, and fixed padding's padded positions take part in that
    range, so INT8 is held to its distance from fp32 instead."""
    try:
        p = load(embedded, "SST", name)
    except NotApplicable as e:
        # only the GPU-only rungs are refused on a CPU, and the oneDNN ones on a torch without it
        assert "CUDA" in str(e) or "GPU" in str(e) or "oneDNN" in str(e)
        return
    batch = p.featurize(sentences[:16] + SHORT)
    fixed = p.infer(batch, 16, padding="fixed").astype(np.float64)
    packed = p.infer(batch, 16, padding="packed")
    err = np.abs(packed - fixed).max()
    if p.recipe.int8:  # INT8 is held to fp32 instead: packed as close to it as fixed is
        ref = load(embedded, "embedding").infer(batch, 16, padding="fixed")
        q = load(embedded, "embedding", name)
        errs = {m: np.abs(q.infer(batch, 16, padding=m) - ref).mean() for m in ("fixed", "packed")}
        assert errs["packed"] <= 1.5 * errs["fixed"], errs
    elif p.recipe.dtype == "float32":  # fp32 rounding follows the logits' scale (the shipped head's)
        assert err <= 1e-5 * max(1.0, np.abs(fixed).max()), f"{name}: {err}"
    else:
        assert err <= 0.05 * np.abs(fixed).max(), f"{name}: {err}"
        assert (packed.argmax(-1) == fixed.argmax(-1)).mean() >= 0.9


def test_token_buckets_leave_outputs_unchanged(embedded, sentences):
    """CUDA graphs pad a packed batch's token count to a bucket with filler tokens in unused
    grid slots; checked here on the CPU for every head."""
    for task in ("SST", "embedding", "QA"):
        p = load(embedded, task, seq_length=64)
        batch = p.featurize(list(zip(sentences[:9], sentences[9:18])) if task == "QA" else sentences[:9] + SHORT)
        batch = batch.batch if hasattr(batch, "batch") else batch
        ref = p.run_batch(batch, "packed")
        p.bucket_tokens = True
        staged = p.stage(batch, "packed")
        assert staged[3].shape[0] % p.token_bucket == 0 or staged[3].shape[0] == staged[0].numel()
        assert staged[3].shape[0] > batch.valid_length.sum()
        np.testing.assert_allclose(p.run_batch(batch, "packed"), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe", ["baseline", "fp16"])
def test_export_reloads_with_variable_lengths(embedded, sentences, tmp_path, recipe):
    """The fp16 rung (fp16 reductions emulated element by element) exports too."""
    from bertg4.pt import load_exported
    p = load(embedded, "SST", recipe, seq_length=64)
    p.export(str(tmp_path))
    q = load_exported(str(tmp_path))
    assert q.padding_modes == MODES
    batch = p.featurize(sentences[:5] + SHORT)
    for mode in MODES:
        np.testing.assert_allclose(q.infer(batch, 8, padding=mode), p.infer(batch, 8, padding=mode),
                                   atol=1e-5, rtol=0)


def test_bad_switches_are_named(embedded, sentences):
    p = load(embedded, "SST")
    batch = p.featurize(sentences[:4])
    for bad in ("pad", None, 3):
        with pytest.raises(ValueError, match=r"padding .*choose one of fixed, longest, packed"):
            check_padding(bad)
    with pytest.raises(ValueError, match="'short'"):
        p.infer(batch, padding="short")
    with pytest.raises(ValueError, match="'max'.*fixed, longest, packed"):
        p.predict(sentences[:2], padding="max")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch size"):
            p.infer(batch, bad, padding="packed")
    with pytest.raises(ValueError, match="batch size"):
        p.predict(sentences[:2], batch_size=0)
    with pytest.raises(ValueError, match="trim"):
        trim(batch, int(batch.valid_length.max()) - 1)
    hf = bertg4.load("embedded", task="SST", engine="hf", checkpoint=embedded)
    assert hf.padding_modes == ("fixed", "longest") and hf.default_padding == "longest"
    with pytest.raises(NotApplicable, match="packed.*fixed, longest"):
        hf.infer(batch, padding="packed")
    np.testing.assert_allclose(hf.infer(batch, padding="longest"), hf.infer(batch, padding="fixed"),
                               atol=1e-5, rtol=0)


def test_compile_rung_refusals(embedded, tmp_path):
    with pytest.raises(NotApplicable, match="cuda_graphs"):
        Recipe("x", compile=True, cuda_graphs=True)
    with pytest.raises(NotApplicable, match="int8"):
        Recipe("x", compile=True, int8=True)
    p = load(embedded, "SST", "compile-fp32")  # compiles on first call only
    with pytest.raises(NotApplicable, match="torch.compile"):
        p.export(str(tmp_path))
    with pytest.raises(NotApplicable):
        bertg4.load("embedded", task="SST", engine="hf", recipe="compile-fp32", checkpoint=embedded)


def test_length_batches_and_waste():
    valid = np.array([5, 3, 5, 1, 3])
    parts = length_batches(valid, 2)
    assert [p.tolist() for p in parts] == [[3, 1], [4, 0], [2]]  # stable among equal lengths
    assert padding_waste(valid, 5 * 8) == pytest.approx(40 / 17)
    b = Batch(np.ones((2, 8)), np.zeros((2, 8)), [2, 5])
    assert trim(b, 5).input_ids.shape == (2, 5)
