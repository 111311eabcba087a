"""The ``onednn`` rungs' float32 matmuls on oneDNN where it computes them in float32
(bertg4.pt.matmul): the probe that decides it and its refusals, the setting held only during
forwards (nested, threaded, restored), answers equal to PyTorch's default library, and the
primitives oneDNN logs."""
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import bertg4
from bertg4.bench import record
from bertg4.pt import matmul, onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN prepacked Linear")
on_onednn = pytest.mark.skipif(matmul.probe(384, 12, 1536) is not None,
                               reason=f"float32 matmuls stay on PyTorch's default here: {matmul.probe(384, 12, 1536)}")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return set(next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


@pytest.fixture(autouse=True)
def no_setting(monkeypatch):
    monkeypatch.delenv(matmul.ENV, raising=False)


@pytest.fixture
def fresh_probe():
    matmul.probe.cache_clear()
    yield
    matmul.probe.cache_clear()


@pytest.mark.skipif("amx_tile" in _cpu_flags() or "avx512_bf16" not in _cpu_flags(),
                    reason="measured on CPUs with AVX-512 BF16 and without AMX only")
def test_probe_allows_it_on_a_cpu_without_amx(fresh_probe):
    """Where it was measured to hold (AVX-512 with BF16, no AMX: the CPU records' machine),
    the probe must allow it, for BERT-base's and MiniLM's shapes; a torch that stopped routing
    or started rounding there would fail here instead of skipping every test below."""
    assert matmul.probe(768, 12, 3072) is None and matmul.probe(384, 12, 1536) is None


def _rounding(real, positions):
    """``real`` with its inputs at ``positions`` rounded to bfloat16 inside the setting, as
    bfloat16 arithmetic would do it."""
    def call(*args, **kwargs):
        if matmul._active:
            args = tuple(a.bfloat16().float() if i in positions else a for i, a in enumerate(args))
        return real(*args, **kwargs)
    return call


@on_onednn
@pytest.mark.parametrize("where, what", [(("torch", "baddbmm", (1, 2)), "attention scores"),
                                         (("torch", "bmm", (0, 1)), "attention context"),
                                         (("onednn", "linear", (0,)), "prepacked Linear (QKV)"),
                                         (("onednn", "linear_gelu", (0,)), "prepacked Linear+GELU (FFN in)")])
def test_probe_refuses_a_library_that_rounds(monkeypatch, fresh_probe, where, what):
    """Where oneDNN would round float32 inputs to bfloat16 (as its kernels for AMX may), in
    any one of the forward's calls, the probe names that call and the error it measured, and
    no predictor takes the setting."""
    owner = torch if where[0] == "torch" else onednn
    monkeypatch.setattr(owner, where[1], _rounding(getattr(owner, where[1]), where[2]))
    reason = matmul.probe(384, 12, 1536)
    assert reason is not None and f"rounds float32 {what}" in reason and "relative error" in reason, reason
    assert matmul.choice(torch.device("cpu"), 384, 12, 1536) is None
    assert reason in matmul.note(torch.device("cpu"), None, 384, 12, 1536)


@pytest.mark.parametrize("op", ["matmul", "bmm"])
def test_probe_says_when_the_setting_changes_nothing(monkeypatch, fresh_probe, op):
    if (matmul.probe(384, 12) or "").startswith("this torch keeps float32 mm"):
        pytest.skip("float32 mm stays on its default library on this CPU without any patch: nothing to show")
    matmul.probe.cache_clear()
    real = getattr(torch, op)
    monkeypatch.setattr(torch, op, lambda a, b: real(a.double(), b.double()).float())  # same bits either way
    assert f"keeps float32 {'mm' if op == 'matmul' else op} on its default library" in matmul.probe(384, 12)


def test_probe_and_forwards_of_other_threads(fresh_probe):
    """The probe switches PyTorch's setting while it runs; a forward of another thread that
    ends meanwhile must not leave the setting on (or off) for the rest of the process."""
    flag = torch.backends.mkldnn.matmul
    before = flag.fp32_precision
    for _ in range(3):
        matmul.probe.cache_clear()
        inside, leave = threading.Event(), threading.Event()

        def forward():
            with matmul.onednn_float32():
                inside.set()
                leave.wait(10)
        th = threading.Thread(target=forward)
        th.start()
        inside.wait(10)
        prober = threading.Thread(target=matmul.probe, args=(384, 12, 1536))
        prober.start()
        leave.set()  # the forward ends while the probe runs (or waits for it)
        th.join(20)
        prober.join(60)
        assert flag.fp32_precision == before and matmul._active == 0


def test_setting_nests_restores_and_counts_threads():
    flag = torch.backends.mkldnn.matmul
    before = flag.fp32_precision
    try:
        flag.fp32_precision = "ieee"  # a user's own setting comes back
        t = torch.zeros(2, 2)
        assert not matmul.onednn_float32_allowed(t)
        with matmul.onednn_float32():
            assert flag.fp32_precision == "bf16" and matmul.onednn_float32_allowed(t)
            assert not matmul.onednn_float32_allowed(t.double())  # only float32 CPU tensors copy for it
            with matmul.onednn_float32():
                pass
            assert flag.fp32_precision == "bf16"
        assert flag.fp32_precision == "ieee"
        # two threads whose forwards overlap, the first ending first: the setting stays until the last ends
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first():
            with matmul.onednn_float32():
                a_in.set()
                b_in.wait(10)
            a_out.set()

        def second():
            a_in.wait(10)
            with matmul.onednn_float32():
                b_in.set()
                a_out.wait(10)
                seen["inside"] = flag.fp32_precision
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        assert seen["inside"] == "bf16" and flag.fp32_precision == "ieee" and matmul._active == 0
    finally:
        flag.fp32_precision = before


def test_which_predictors_take_it(embedded):
    """The onednn rungs on a CPU (where the probe allows); not the other rungs, nor the hf
    reference, which run as their users have them. Notes and records say which library ran
    a CPU predictor's float32 matmuls."""
    want = matmul.ONEDNN if matmul.probe(384, 12, 1536) is None else None
    on = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    int8 = bertg4.load("embedded", "SST", recipe="onednn-int8", checkpoint=embedded)
    base = bertg4.load("embedded", "SST", checkpoint=embedded)
    hf = bertg4.load("embedded", "SST", engine="hf", checkpoint=embedded)
    assert on.float32_matmul == want and int8.float32_matmul == want
    assert base.float32_matmul is None and hf.float32_matmul is None
    said = [n for n in on.notes if n.startswith(matmul.NOTE)]
    assert len(said) == 1 and (matmul.ONEDNN in said[0]) == (want is not None)
    assert not [n for n in base.notes + hf.notes if n.startswith(matmul.NOTE)]
    assert record(on, {})["float32_matmul"] == (want or matmul.DEFAULT)
    assert record(base, {})["float32_matmul"] == matmul.DEFAULT == record(hf, {})["float32_matmul"]


def test_switched_off_by_the_environment(embedded, monkeypatch):
    monkeypatch.setenv(matmul.ENV, "0")
    p = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    assert p.float32_matmul is None
    assert [n for n in p.notes if n.startswith(matmul.NOTE)] == [matmul.NOTE + f"PyTorch's default library ({matmul.ENV}=0)"]
    monkeypatch.setenv(matmul.ENV, "yes")
    with pytest.raises(ValueError, match=f"{matmul.ENV}='yes'"):
        bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)


@on_onednn
def test_setting_held_only_during_the_forward(embedded):
    p = bertg4.load("embedded", "SST", recipe="onednn-fp32", checkpoint=embedded)
    before = torch.backends.mkldnn.matmul.fp32_precision
    seen = []
    for gm in (p.module, p.packed_module):
        gm.register_forward_pre_hook(lambda m, a: seen.append(torch.backends.mkldnn.matmul.fp32_precision))
    p.predict(["a fine film", "dull"], padding="fixed")
    p.predict(["a fine film", "dull"], padding="packed")
    assert seen == ["bf16", "bf16"] and torch.backends.mkldnn.matmul.fp32_precision == before
    with pytest.raises(TypeError):
        p.run((torch.zeros(1, 3, dtype=torch.long),))  # a forward that fails
    assert torch.backends.mkldnn.matmul.fp32_precision == before and matmul._active == 0


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
def test_int8_labels_where_float32_is_clear(embedded, sst2_dev):
    """``onednn-int8`` quantizes each Linear's input with one scale for the whole tensor, so
    float32 rounding inside attention can move every code of the next Linear by a step and a
    logit by tenths on this model. A sanity check that the setting breaks nothing: the labels
    equal float32's wherever its two logits are clearly apart, with the setting and without."""
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


def _primitives(env):
    out = subprocess.run([sys.executable, "-c", _VERBOSE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ONEDNN_VERBOSE": "1", **env})
    assert out.returncode == 0, out.stderr
    return [ln for ln in out.stdout.splitlines() if ",exec,cpu," in ln]


@on_onednn
def test_attention_gemms_run_on_onednn_on_float32_memory():
    """oneDNN's own log: with the setting, each layer's two attention GEMMs run as oneDNN
    matmuls on float32 sources, weights and results (the arithmetic itself is the probe's
    and the tests above'); without it (BERTG4_ONEDNN_MATMUL=0) none does. The Linears run on
    oneDNN either way, on float32 memory."""
    layers = bertg4.load("embedded", "SST").config.num_layers
    # MiniLM's attention: 12 heads of 32, seq 64: scores 12x64x32 by 12x32x64, context 12x64x64 by 12x64x32
    attention = re.compile(r",12x64x32:12x32x64,|,12x64x64:12x64x32,")
    on, off = _primitives({}), _primitives({matmul.ENV: "0"})
    gemms = [ln for ln in on if ",matmul," in ln and attention.search(ln)]
    assert len(gemms) == 2 * layers, gemms
    assert all("src:f32" in ln and "wei:f32" in ln and "dst:f32" in ln for ln in gemms), gemms
    assert not [ln for ln in off if ",matmul," in ln and attention.search(ln)]
    for lines in (on, off):  # the prepacked Linears (QKV, output, FFN in and out per layer)
        linears = [ln for ln in lines if (",inner_product," in ln or ",matmul," in ln) and not attention.search(ln)]
        assert len(linears) >= 4 * layers and all("src:f32" in ln for ln in linears), linears[:4]
