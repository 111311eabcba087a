"""The ``onednn`` rungs' float32 matmuls (attention's two batched GEMMs) on oneDNN where it
computes them in float32 (bertg4.pt.matmul): the probe that decides it, its refusal of a library
that rounds, the permission held only during a forward, answers equal to PyTorch's default
library, and the primitives oneDNN logs."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import bertg4
from bertg4.bench import record
from bertg4.pt import matmul, onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN prepacked Linear")
on_onednn = pytest.mark.skipif(matmul.probe() is not None,
                               reason=f"float32 matmuls stay on PyTorch's default here: {matmul.probe()}")


@pytest.fixture
def fresh_probe():
    matmul.probe.cache_clear()
    yield
    matmul.probe.cache_clear()


def test_probe_refuses_a_library_that_rounds(monkeypatch, fresh_probe):
    """Where oneDNN would round float32 inputs to bfloat16 (a CPU with AMX), the probe says so,
    with the error it measured, and no predictor takes the permission."""
    real = torch.matmul

    def rounding(a, b):
        if matmul.onednn_float32_allowed():
            return real(a.bfloat16().float(), b.bfloat16().float())
        return real(a, b)
    monkeypatch.setattr(torch, "matmul", rounding)
    reason = matmul.probe()
    assert reason is not None and "rounds float32 matmuls" in reason and "relative error" in reason
    assert matmul.choice(torch.device("cpu")) is None
    assert reason in matmul.note(torch.device("cpu"), None)


def test_probe_says_when_the_permission_changes_nothing(monkeypatch, fresh_probe):
    real = torch.matmul
    monkeypatch.setattr(torch, "matmul", lambda a, b: real(a, b) if a.dtype == torch.float64 else
                        real(a.double(), b.double()).float())  # the same bits with and without it
    assert "keeps float32 matmuls on its default library" in matmul.probe()


def test_which_predictors_take_it(embedded):
    """The onednn rungs on a CPU (where the probe allows); not the other rungs, nor the hf
    reference, which run as their users have them. Each onednn predictor's notes and records
    say which library ran its float32 matmuls."""
    want = matmul.ONEDNN if matmul.probe() is None else None
    on = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    int8 = bertg4.load("embedded", "SST", recipe="onednn-int8", checkpoint=embedded)
    base = bertg4.load("embedded", "SST", checkpoint=embedded)
    hf = bertg4.load("embedded", "SST", engine="hf", checkpoint=embedded)
    assert on.float32_matmul == want and int8.float32_matmul == want
    assert base.float32_matmul is None and hf.float32_matmul is None
    said = [n for n in on.notes if n.startswith(matmul.NOTE)]
    assert len(said) == 1 and (matmul.ONEDNN in said[0]) == (want is not None)
    assert not [n for n in base.notes + hf.notes if n.startswith(matmul.NOTE)]
    assert record(on, {})["float32_matmul"] == (want or "default")
    assert record(base, {})["float32_matmul"] == "default" == record(hf, {})["float32_matmul"]


def test_switched_off_by_the_environment(embedded, monkeypatch):
    monkeypatch.setenv(matmul.ENV, "0")
    p = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    assert p.float32_matmul is None
    assert [n for n in p.notes if n.startswith(matmul.NOTE)] == [matmul.NOTE + f"PyTorch's default library ({matmul.ENV}=0)"]
    monkeypatch.setenv(matmul.ENV, "yes")
    with pytest.raises(ValueError, match=f"{matmul.ENV}='yes'"):
        bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)


@on_onednn
def test_permission_held_only_during_the_forward(embedded):
    p = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    before = torch.backends.mkldnn.matmul.fp32_precision
    seen = []
    for gm in (p.module, p.packed_module):
        gm.register_forward_pre_hook(lambda m, a: seen.append(torch.backends.mkldnn.matmul.fp32_precision))
    p.predict(["a fine film", "dull"], padding="fixed")
    p.predict(["a fine film", "dull"], padding="packed")
    assert seen == ["bf16", "bf16"] and torch.backends.mkldnn.matmul.fp32_precision == before
    with pytest.raises(Exception):
        p.run((torch.zeros(1, 3, dtype=torch.long),))  # a forward that fails
    assert torch.backends.mkldnn.matmul.fp32_precision == before


@on_onednn
def test_answers_equal_the_default_library(embedded, sst2_dev):
    """float32 arithmetic either way: ``onednn-fp32``'s answers equal within float32 rounding in
    every padding mode: 2e-5 of the largest logit, what two summation orders leave after six
    layers (the padding modes on one library differ by as much; bfloat16 inputs would give
    ~1e-2)."""
    p = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    batch = p.featurize(list(sst2_dev.first[:64]) + ["ok", "a"])
    for mode in ("fixed", "longest", "packed"):
        got = p.infer(batch, 8, padding=mode)
        p.float32_matmul = None
        try:
            ref = p.infer(batch, 8, padding=mode)
        finally:
            p.float32_matmul = matmul.ONEDNN
        assert np.abs(got - ref).max() <= 2e-5 * max(1.0, np.abs(ref).max()), (mode, np.abs(got - ref).max())
        assert (got.argmax(-1) == ref.argmax(-1)).all(), mode


@on_onednn
def test_int8_stays_as_close_to_float32(embedded, sst2_dev):
    """``onednn-int8``: each Linear quantizes its input with one scale for the whole tensor, so
    float32 rounding inside attention can move every code of the next Linear by a step, and
    a logit by up to ~0.6 on this model either way (0.52 and 0.60 here). The labels equal
    float32's wherever its two logits are clearly apart, with the permission and without it."""
    fp32 = bertg4.load("embedded", "SST", checkpoint=embedded)
    p = bertg4.load("embedded", "SST", recipe="onednn-int8", checkpoint=embedded)
    batch = p.featurize(list(sst2_dev.first[:64]) + ["ok", "a"])
    ref = fp32.infer(batch, 8)
    clear = np.abs(ref[:, 0] - ref[:, 1]) > 1.5  # a margin two logit moves of 0.75 cannot close
    assert clear.mean() > 0.4  # the shipped probe head's margins are small: about half the rows
    for library in (matmul.ONEDNN, None):
        p.float32_matmul = library
        got = p.infer(batch, 8)
        assert (got.argmax(-1) == ref.argmax(-1))[clear].all(), library
        assert np.abs(got - ref).max() < 1.0, library


_VERBOSE = """
import bertg4
p = bertg4.load("embedded", "SST", recipe="onednn-fp32", seq_length=64)
p.predict(["a fine film , and a long one"], padding="fixed")
"""


def _matmuls(env):
    out = subprocess.run([sys.executable, "-c", _VERBOSE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ONEDNN_VERBOSE": "1", **env})
    assert out.returncode == 0, out.stderr
    # MiniLM's attention: 12 heads of 32, seq 64: scores 12x64x32 by 12x32x64, context 12x64x64 by 12x64x32
    return [ln for ln in out.stdout.splitlines() if ",exec,cpu,matmul," in ln
            and re.search(r",12x64x32:12x32x64,|,12x64x64:12x64x32,", ln)]


@on_onednn
def test_attention_gemms_run_on_onednn_in_float32():
    """oneDNN's own log: with the permission, each layer's two attention GEMMs run as oneDNN
    matmuls on float32 sources and weights; without it (BERTG4_ONEDNN_MATMUL=0) none does."""
    lines = _matmuls({})
    layers = bertg4.load("embedded", "SST").config.num_layers
    assert len(lines) == 2 * layers, lines
    assert all("src:f32" in ln and "wei:f32" in ln and "dst:f32" in ln for ln in lines), lines
    assert _matmuls({matmul.ENV: "0"}) == []
