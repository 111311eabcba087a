"""`bertg4.profile`: where the time of one forward pass goes, by operation type."""
import argparse
import json
import math
import sys
import types

import pytest

import bertg4
from bertg4 import profile as P
from bertg4.profile import (ADD, ATTENTION, CATEGORIES, COPY, GELU, GEMM, LAYERNORM, OTHER, SOFTMAX,
                            categorize)

TORCH_NAMES = [
    ("aten::linear", GEMM), ("aten::addmm", GEMM), ("aten::addmm_", GEMM), ("aten::mm", GEMM),
    ("aten::matmul", GEMM),
    ("aten::bmm", ATTENTION), ("aten::baddbmm", ATTENTION),
    ("aten::scaled_dot_product_attention", ATTENTION),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", ATTENTION),
    ("aten::softmax", SOFTMAX), ("aten::_softmax", SOFTMAX),
    ("aten::layer_norm", LAYERNORM), ("aten::native_layer_norm", LAYERNORM),
    ("aten::gelu", GELU), ("aten::add", ADD), ("aten::add_", ADD),
    ("aten::copy_", COPY), ("aten::contiguous", COPY), ("aten::clone", COPY), ("aten::cat", COPY),
    ("aten::permute", COPY), ("aten::transpose", COPY), ("aten::reshape", COPY),
    ("aten::index_select", OTHER), ("aten::masked_fill_", OTHER), ("aten::empty", OTHER),
    ("aten::tanh", OTHER),
]
CUDA_KERNELS = [
    ("ampere_sgemm_128x64_tn", GEMM),
    ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1", GEMM),
    ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_128x128_16x4_tn_align4>(Params)", GEMM),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>(Params)", ATTENTION),
    ("fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)", ATTENTION),
    ("void (anonymous namespace)::softmax_warp_forward<float, float, float, 7, false, false>", SOFTMAX),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>", LAYERNORM),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl(...)>", GELU),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, "
     "std::array<char*, 3ul> >(int, at::native::CUDAFunctor_add<float>, std::array<char*, 3ul>)", ADD),
    ("void at::native::elementwise_kernel<128, 2, at::native::direct_copy_kernel_cuda(...)>", COPY),
    ("Memcpy HtoD (Pageable -> Device)", COPY),
    ("void at::native::index_elementwise_kernel<128, 4, ...>", OTHER),
]
MXNET_NAMES = [
    ("FullyConnected", GEMM), ("batch_dot", ATTENTION),
    ("_contrib_interleaved_matmul_selfatt_qk", ATTENTION),
    ("_contrib_interleaved_matmul_selfatt_valatt", ATTENTION),
    ("softmax", SOFTMAX), ("masked_softmax", SOFTMAX), ("LayerNorm", LAYERNORM),
    ("LeakyReLU", GELU), ("_contrib_gelu", GELU),
    ("elemwise_add", ADD), ("broadcast_add", ADD), ("_plus_scalar", ADD),
    ("transpose", COPY), ("Reshape", COPY), ("SwapAxis", COPY), ("Concat", COPY), ("_copy", COPY),
    ("slice", COPY), ("Embedding", OTHER), ("_mul_scalar", OTHER), ("Dropout", OTHER),
]


@pytest.mark.parametrize("name, category", TORCH_NAMES + CUDA_KERNELS + MXNET_NAMES)
def test_categorize_known_names(name, category):
    assert categorize(name) == category


def test_categorize_refuses_no_name():
    with pytest.raises(ValueError, match="operator or kernel name"):
        categorize("")
    with pytest.raises(ValueError, match="operator or kernel name"):
        categorize(None)


# --- context rules, on a hand-built event tree --------------------------------------------

class _Event:
    def __init__(self, name, self_us, parent=None):
        self.name, self.self_cpu_time_total, self.cpu_parent = name, float(self_us), parent
        self.cpu_children = []
        if parent is not None:
            parent.cpu_children.append(self)


def _tree():
    """One projection, one attention matmul whose key operand is materialised, a LayerNorm,
    an sdpa call that falls back to the math path, and a few loose operators."""
    ev = []

    def add(name, us, parent=None):
        ev.append(_Event(name, us, parent))
        return ev[-1]
    lin = add("aten::linear", 1)
    add("aten::t", 2, lin)
    mm = add("aten::addmm", 100, lin)
    add("aten::copy_", 30, mm)          # addmm copying its bias in: GEMM time
    add("aten::expand", 1, mm)
    mat = add("aten::matmul", 1)
    rs = add("aten::reshape", 1, mat)   # a view op inside matmul: matmul's time
    cl = add("aten::clone", 2, rs)      # the materialising reshape: a copy
    add("aten::copy_", 20, cl)
    add("aten::bmm", 40, mat)
    ln = add("aten::layer_norm", 1)
    nl = add("aten::native_layer_norm", 10, ln)
    add("aten::empty", 1, nl)
    sd = add("aten::scaled_dot_product_attention", 1)
    math_ = add("aten::_scaled_dot_product_attention_math", 1, sd)
    add("aten::_softmax", 5, math_)     # inside sdpa: attention
    add("aten::transpose", 1)           # a loose view: copies/transposes
    add("aten::index_select", 7)
    add("aten::gelu", 9)
    add("aten::add", 3)
    return ev


def test_context_rules_on_an_event_tree():
    ev = _tree()
    rows = P.classify_cpu_events(ev)
    assert len(rows) == len(ev)
    assert math.isclose(sum(r[2] for r in rows), sum(e.self_cpu_time_total for e in ev))
    by_cat = {c: sum(us for _, cat, us, _, _ in rows if cat == c) for c in CATEGORIES}
    assert by_cat == {GEMM: 1 + 2 + 100 + 30 + 1, ATTENTION: 1 + 1 + 40 + 1 + 1 + 5,
                      SOFTMAX: 0, LAYERNORM: 1 + 10 + 1, GELU: 9, ADD: 3,
                      COPY: 2 + 20 + 1, OTHER: 7}
    calls = {c: sum(n for _, cat, _, n, _ in rows if cat == c) for c in CATEGORIES}
    # linear->addmm is one GEMM call, matmul->bmm one attention call, clone->copy_ one copy
    assert calls[GEMM] == 1 and calls[ATTENTION] == 2 and calls[COPY] == 2 and calls[LAYERNORM] == 1


class _Span:
    def __init__(self, us):
        self.us = us

    def elapsed_us(self):
        return self.us


def test_device_kernels_take_the_category_of_the_operator_that_launched_them():
    lin = _Event("aten::linear", 1)
    mm = _Event("aten::addmm", 5, lin)
    mat = _Event("aten::matmul", 1)
    bmm = _Event("aten::bmm", 4, mat)
    ops = [lin, mm, mat, bmm]
    for i, e in enumerate(ops, 1):
        e.id, e.linked_correlation_id, e.is_user_annotation = i, 0, False

    def kernel(name, us, launched_by):
        k = types.SimpleNamespace(name=name, time_range=_Span(us), linked_correlation_id=launched_by)
        return k
    kernels = [kernel("sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n", 100, mm.id),
               kernel("ampere_sgemm_64x64_nn", 30, bmm.id),           # a GEMM kernel of bmm
               kernel("Memcpy DtoD (Device -> Device)", 2, mm.id),   # inside addmm: GEMM time
               kernel("void (anonymous namespace)::softmax_warp_forward<float>", 5, 99)]  # no op
    rows = P.classify_device_events(ops, kernels)
    assert [(cat, us, n) for _, cat, us, n, _ in rows] == [
        (GEMM, 100.0, 1), (ATTENTION, 30.0, 1), (GEMM, 2.0, 1), (SOFTMAX, 5.0, 1)]


# --- measured on real models ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small_records():
    p = bertg4.load("embedded", task="SST", seq_length=16)
    batch = p.featurize(["a gripping, funny film", "two hours of noise"])
    return P.profile_ops(p, batch, warmup=1, repeats=2, data="test sentences")


def test_categories_sum_to_the_profiled_total():
    import torch
    p = bertg4.load("embedded", task="SST", seq_length=16)
    staged = p.prepare(p.featurize(["a gripping, funny film", "two hours of noise"]))
    p.run(staged)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        p.run(staged)
    events = P._torch_cpu_events(prof)
    rows = P.classify_cpu_events(events)
    total = sum(e.self_cpu_time_total for e in events)
    roots = sum(e.cpu_time_total for e in events if e.cpu_parent is None)
    by_cat = {c: sum(us for _, cat, us, _, _ in rows if cat == c) for c in CATEGORIES}
    assert total > 0
    assert math.isclose(sum(by_cat.values()), total, rel_tol=1e-9)
    assert math.isclose(sum(by_cat.values()), roots, rel_tol=1e-6)  # each event counted once
    assert set(r[1] for r in rows) <= set(CATEGORIES)
    assert by_cat[GEMM] > 0 and by_cat[LAYERNORM] > 0 and by_cat[SOFTMAX] > 0


def test_record_fields(small_records):
    recs = small_records
    assert [r["category"] for r in recs] == list(CATEGORIES)
    for r in recs:
        for key in ("engine", "recipe", "task", "batch_size", "seq_length", "dtype", "device_name",
                    "category", "time_ms", "share", "calls", "versions", "date", "total_ms"):
            assert key in r, key
        assert (r["engine"], r["recipe"], r["task"], r["batch_size"], r["seq_length"], r["dtype"]) == \
            ("pt", "baseline", "SST", 2, 16, "float32")
        assert r["status"] == "ok" and r["repeats"] == 2 and r["data"] == "test sentences"
        assert r["time_ms"] >= 0 and 0 <= r["share"] <= 1
        assert "torch" in r["versions"]
    assert math.isclose(sum(r["time_ms"] for r in recs), recs[0]["total_ms"], rel_tol=1e-9)
    assert math.isclose(sum(r["share"] for r in recs), 1.0, rel_tol=1e-9)
    gemm = recs[0]
    # MiniLM: 6 layers x (q, k, v, out, ffn1, ffn2) + pooler + classifier
    assert gemm["calls"] == 6 * 6 + 2
    assert gemm["top_ops"][0][0] == "aten::addmm" and gemm["top_ops"][0][2] == 6 * 6 + 2
    assert json.loads(json.dumps(recs, default=str))  # JSON-ready


def test_gemm_is_the_largest_category_for_bert_base(measured):
    p = bertg4.load("random:bert_12_768_12", task="SST", seq_length=128)
    from bertg4.sweep import _inputs
    texts, _ = _inputs("SST")
    batch = p.featurize(texts).repeat_to(8)[:8]
    recs = P.profile_ops(p, batch, warmup=1, repeats=1)
    share = {r["category"]: r["share"] for r in recs}
    assert max(share, key=share.get) == GEMM, share
    assert recs[0]["calls"] == 12 * 6 + 2
    measured("GEMM share, BERT-base fp32 CPU batch 8 seq 128 (pt baseline)", f"{100 * share[GEMM]:.1f} %")


def test_profile_ops_refuses_bad_input(small_records):
    p = bertg4.load("embedded", task="SST", seq_length=16)
    batch = p.featurize(["fine"])
    with pytest.raises(ValueError, match="repeats"):
        P.profile_ops(p, batch, repeats=0)
    with pytest.raises(ValueError, match="Batch"):
        P.profile_ops(p, [[1, 2, 3]])
    p.engine = "onnx"
    with pytest.raises(ValueError, match="engine 'onnx'"):
        P.profile_ops(p, batch, warmup=0, repeats=1)


# --- the mx dispatch point -----------------------------------------------------------------

class _FakeMxPredictor:
    """The engine-neutral interface an mx predictor offers (record() reads these)."""
    engine, device = "mx", "cpu"

    def __init__(self):
        from bertg4.config import get_config
        from bertg4.recipe import get_recipe
        from bertg4.tasks import get_task
        self.recipe, self.task = get_recipe("baseline"), get_task("SST")
        self.config = get_config("bert_12_768_12")
        self.runs = 0

    def prepare(self, batch):
        return batch

    def run(self, staged):
        self.runs += 1

    def synchronize(self):
        pass

    def device_name(self):
        return "test CPU"


def _fake_mx(monkeypatch, profile_module):
    pkg = types.ModuleType("bertg4.mx")
    if profile_module is not None:
        pkg.profile = profile_module
    monkeypatch.setitem(sys.modules, "bertg4.mx", pkg)
    monkeypatch.setitem(sys.modules, "bertg4.mx.profile", profile_module)


def test_mx_engine_goes_through_mx_profile_op_times(monkeypatch, small_records):
    calls = []

    def op_times(predictor, batch, repeats):
        calls.append((predictor, len(batch), repeats))
        return [("FullyConnected", 12.0, 8), ("batch_dot", 4.0, 4), ("LayerNorm", 2.0, 4),
                ("Embedding", 2.0, 6)]
    _fake_mx(monkeypatch, types.SimpleNamespace(op_times=op_times))
    pred = _FakeMxPredictor()
    batch = bertg4.load("embedded", task="SST", seq_length=16).featurize(["one", "two", "three"])
    recs = P.profile_ops(pred, batch, warmup=2, repeats=2)
    assert calls == [(pred, 3, 2)] and pred.runs == 2  # warm-up here, profiled runs in op_times
    by = {r["category"]: r for r in recs}
    assert by[GEMM]["time_ms"] == 6.0 and by[GEMM]["calls"] == 4 and by[GEMM]["share"] == 0.6
    assert by[ATTENTION]["share"] == 0.2 and by[LAYERNORM]["share"] == 0.1 and by[OTHER]["share"] == 0.1
    assert by[GEMM]["engine"] == "mx" and by[GEMM]["time_basis"].startswith("MXNet")


def test_mx_engine_without_a_profile_module_is_a_clear_error(monkeypatch, small_records):
    _fake_mx(monkeypatch, None)
    pred = _FakeMxPredictor()
    batch = bertg4.load("embedded", task="SST", seq_length=16).featurize(["one"])
    with pytest.raises(RuntimeError, match="bertg4.mx.profile"):
        P.profile_ops(pred, batch, warmup=0, repeats=1)


# --- the command ---------------------------------------------------------------------------

def _args(*argv):
    parser = argparse.ArgumentParser(prog="bertg4")
    P.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["profile", *argv])


def test_parser_defaults():
    a = _args()
    assert (a.model, a.engine, a.recipe, a.task, a.batch_size, a.seq_length, a.device, a.output) == \
        ("embedded", None, None, "SST", 8, 128, "cpu", "profile_out")
    with pytest.raises(SystemExit):
        _args("--engine", "tf")


def test_run_end_to_end_with_a_not_applicable_recipe(tmp_path, capsys):
    out = tmp_path / "prof"
    args = _args("--engine", "pt", "--engine", "hf", "--recipe", "baseline", "--recipe", "+true_fp16",
                 "--batch-size", "2", "--seq-length", "16", "--warmup", "1", "--repeats", "1",
                 "--output", str(out))
    assert P.run(args) == 0
    assert {p.name for p in out.iterdir()} == {"records.jsonl", "profile.md", "profile.png"}
    assert (out / "profile.png").stat().st_size > 1000
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    ok = [r for r in recs if r["status"] == "ok"]
    na = [r for r in recs if r["status"] == "not applicable"]
    assert {(r["engine"], r["recipe"]) for r in ok} == {("pt", "baseline"), ("hf", "baseline")}
    assert len(ok) == 2 * len(CATEGORIES)
    assert {(r["engine"], r["recipe"]) for r in na} == {("pt", "+true_fp16"), ("hf", "+true_fp16")}
    pt_na = next(r for r in na if r["engine"] == "pt")
    assert "CUDA" in pt_na["reason"] and pt_na["dtype"] == "float16" and "versions" in pt_na
    md = (out / "profile.md").read_text()
    assert "| GEMM |" in md and "pt baseline (float32)" in md and "hf baseline (float32)" in md
    assert "Did not run" in md and "+true_fp16" in md
    printed = capsys.readouterr().out
    assert "| share of time |" in printed and "not applicable" in printed


def test_nothing_applicable_writes_records_and_table_only(tmp_path):
    recs = P.profile("embedded", ["pt"], ["+true_fp16"], "SST", 2, 16, "cpu", 0, 1)
    assert len(recs) == 1 and recs[0]["status"] == "not applicable" and "CUDA" in recs[0]["reason"]
    paths = P.write_outputs(recs, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["profile.md", "records.jsonl"]
    with pytest.raises(ValueError, match="no profile records"):
        from bertg4.plots import op_breakdown
        op_breakdown(recs)


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert P.main(["--model", "no-such-model", "--output", str(tmp_path / "p")]) == 2
    assert "bertg4 profile: error: model 'no-such-model'" in capsys.readouterr().err
    assert P.main(["--warmup", "-1", "--output", str(tmp_path / "p")]) == 2
    assert "--warmup must be >= 0" in capsys.readouterr().err
