"""The measured demonstrations behind notebooks 02-05 (bertg4.explain)."""
import numpy as np
import pytest

from bertg4 import explain
from bertg4.checkpoint import load_checkpoint


def test_layer_norm_overflow_and_softmax_precision():
    ln = explain.layer_norm_overflow(hidden=768, scale=30.0)
    assert ln["sum_of_squares"] > ln["fp16_max"]
    assert ln["safe"]["rel_error"] < 1e-2 < 0.5 < ln["unsafe"]["rel_error"]
    small = explain.layer_norm_overflow(hidden=768, scale=1.0)  # no overflow: both paths hold
    assert small["unsafe"]["rel_error"] < 1e-2 and small["safe"]["rel_error"] < 1e-2
    sm = explain.softmax_precision()
    assert sm["safe_max_rel_error"] < 2e-3 and sm["unsafe_max_rel_error"] > 2 * sm["safe_max_rel_error"]


def test_amplify_residuals_copies_and_scales_only_the_ffn_outputs():
    ck = load_checkpoint("random:minilm_6_384_12")
    st = explain.amplify_residuals(ck, 30.0)
    name = "encoder.layer.3.output.dense.weight"
    np.testing.assert_allclose(st.weights[name], 30.0 * ck.weights[name], rtol=1e-6)
    assert not np.shares_memory(st.weights[name], ck.weights[name])
    changed = {k for k in ck.weights if not np.array_equal(ck.weights[k], st.weights[k])}
    # random weights have zero biases, which scaling leaves as they are
    assert changed == {f"encoder.layer.{i}.output.dense.weight" for i in range(6)}
    for i in range(6):
        name = f"encoder.layer.{i}.output.dense.bias"
        np.testing.assert_array_equal(st.weights[name], 30.0 * ck.weights[name])


def test_interleaved_rows_and_views():
    rows = explain.interleaved_rows(heads=3, head_dim=2)
    assert len(rows) == 18 and rows[:6] == [("q", 0, 0), ("q", 0, 1), ("k", 0, 0), ("k", 0, 1),
                                            ("v", 0, 0), ("v", 0, 1)]
    views = explain.strided_views(seq=5, batch=2, heads=3, head_dim=4)
    assert [views[n]["offset"] for n in "QKV"] == [0, 4, 8]
    assert views["Q"]["shape"] == (6, 5, 4) and views["Q"]["strides"] == (12, 72, 1)


def test_accumulation_error_grows_only_for_the_emulated_fp16_accumulator():
    rows = explain.accumulation_error((64, 1024, 4096))
    emulated = [r["fp16_accumulate_rel_error_emulated"] for r in rows]
    assert emulated == sorted(emulated) and emulated[-1] > 10 * emulated[0]
    assert max(r["fp32_accumulate_rel_error"] for r in rows) < 1e-5


def test_graph_pass_demo_and_slots(embedded):
    from bertg4.data import sample_sst
    demo = explain.graph_pass_demo(embedded, sample_sst().first[:6], seq_length=24)
    assert demo["max_abs_difference"] < 1e-5 * max(1.0, demo["max_abs_output"])
    assert demo["second_pass"] == {"bias_gelu_fused": 0, "qkv_prearranged": 0}
    slots = explain.qkv_slots(demo["after"].module, embedded, layer=5)
    assert [slots[s][n] for s, n in zip("qkv", ("query", "key", "value"))] == [0.0, 0.0, 0.0]
    assert slots["v"]["key"] > 0 and slots["v"]["query"] > 0
    code = explain.layer_code(demo["after"].module, 0)
    assert "qkv_weight" in code and "bias_gelu" in code and "interleave_qkv" not in code


# --- the ladder, speedups and noise --------------------------------------------------------

def _rec(recipe, batch, p50, repeat=None, spread=0.05, iterations=20, engine="pt", device="cpu"):
    r = {"engine": engine, "recipe": recipe, "batch_size": batch, "seq_length": 128, "status": "ok",
         "model": "bert_12_768_12", "device": device, "device_name": "test CPU", "iterations": iterations,
         "latency_ms_p50": p50, "latency_ms_min": p50 * (1 - spread), "latency_ms_p90": p50 * (1 + spread),
         "sequences_per_s": 1e3 * batch / p50}
    if repeat is not None:
        r["repeat"] = repeat
    return r


def test_ladder_rows_are_computed_from_the_recipes():
    from bertg4.recipe import ladder
    rows = explain.ladder_rows()
    assert [r["rung"] for r in rows] == [r.name for r in ladder()]
    assert rows[0]["changes"] == {} and rows[1]["changes"] == {"dtype": "float16", "safe_accumulation": False}
    assert rows[2]["changes"] == {"safe_accumulation": True} and "MXNET_SAFE_ACCUMULATION=1" in rows[2]["mxnet"]
    assert "MXNET_SAFE_ACCUMULATION=0" in rows[1]["mxnet"] and "FullyConnected only" in rows[4]["mxnet"]
    assert [r["on_cpu"] == "yes" for r in rows] == [True] * 4 + [False] * 3
    assert rows[5]["on_cpu"] == "GPU only (builds on +true_fp16)"
    table = explain.markdown_table(rows, {"rung": "rung", "adds": "switches on"})
    assert table.splitlines()[0] == "| rung | switches on |" and len(table.splitlines()) == 2 + len(rows)


def test_speedup_summary_states_a_speedup_only_beyond_the_spread():
    base = [_rec("baseline", 8, 100.0, i) for i in range(3)]
    fast = [_rec("x", 8, 50.0, i) for i in range(3)]
    s = explain.speedup_summary(base, fast)
    assert s["ratio"] == 2.0 and s["significant"] and s["low"] > 1 and "faster" in s["text"]
    same = [_rec("y", 8, p, i) for i, p in enumerate((95.0, 104.0, 99.0))]
    s = explain.speedup_summary(base, same)
    assert not s["significant"] and s["low"] < 1 < s["high"] and s["text"].startswith("no difference shown")
    # repeats that disagree widen the spread even when each repeat's iterations are tight
    drift = [_rec("z", 8, p, i, spread=0.0) for i, p in enumerate((50.0, 50.0, 140.0))]
    s = explain.speedup_summary([_rec("baseline", 8, 100.0, i, spread=0.0) for i in range(3)], drift)
    assert s["ratio"] == 2.0 and s["high"] == 2.0 and s["low"] < 1 and not s["significant"]
    slow = explain.speedup_summary(base, [_rec("w", 8, 300.0)])  # one record: iterations only
    assert slow["significant"] and slow["ratio"] < 1 and "slower" in slow["text"]
    with pytest.raises(ValueError, match="one batch size"):
        explain.speedup_summary(base, [_rec("x", 4, 50.0)])
    with pytest.raises(ValueError, match="at least one timed"):
        explain.speedup_summary(base, [{"status": "not applicable"}])


def test_speedup_table_lists_every_recipe_and_why_one_did_not_run():
    recs = [_rec("baseline", b, 100.0 * b, i) for b in (1, 2) for i in range(2)]
    recs += [{"engine": "pt", "recipe": "fp16", "status": "emulation", "reason": "an emulation"}]
    recs += [_rec("+interleaved", b, 40.0 * b, i) for b in (1, 2) for i in range(2)]
    recs += [{"engine": "pt", "recipe": "+true_fp16", "status": "not applicable", "reason": "needs a CUDA GPU"}]
    rows = explain.speedup_rows(recs)
    assert [r["recipe"] for r in rows] == ["baseline", "fp16", "+interleaved", "+true_fp16"]
    assert rows[2]["speedups"][2]["ratio"] == 2.5 and rows[1]["status"] == "emulation"
    text = explain.format_speedups(recs)
    assert "| +interleaved | 2.50x (" in text and "| fp16 | emulation | emulation |" in text
    assert "- +true_fp16: not applicable -- needs a CUDA GPU" in text and "measured on test CPU" in text
    lines = explain.speedup_lines(recs)
    assert lines[0] == "fp16: emulation (an emulation)"
    assert lines[1].startswith("+interleaved over baseline, batch 1: 2.50x")
    with pytest.raises(ValueError, match="one engine"):
        explain.speedup_rows(recs + [_rec("baseline", 1, 10.0, engine="mx")])
    with pytest.raises(ValueError, match="baseline"):
        explain.speedup_rows(recs, baseline="nothing")


def test_median_records_and_noise_reason():
    recs = [_rec("baseline", 4, p, i) for i, p in enumerate((10.0, 30.0, 20.0))]
    recs.append({"recipe": "fp16", "status": "emulation"})
    med = explain.median_records(recs)
    assert len(med) == 2 and med[1]["status"] == "emulation" and med[0]["recipe"] == "baseline"
    m = med[0]
    assert m["latency_ms_p50"] == 20.0 and m["repeats"] == 3 and "repeat" not in m
    assert m["latency_ms_min"] == 10.0 * 0.95 and m["latency_ms_p90"] == 30.0 * 1.05
    assert explain.noise_reason(recs, smoke=True).startswith("smoke sizes")
    assert "a CPU shared with other processes" in explain.noise_reason(recs)
    gpu = [_rec("baseline", 4, 10.0, device="cuda", iterations=50, spread=0.01)]
    assert explain.noise_reason(gpu) is None
    assert "2 timed iterations" in explain.noise_reason([_rec("baseline", 4, 10.0, device="cuda", iterations=2)])


def test_emulation_reason_names_only_the_pt_engines_unsafe_fp16():
    assert "emulation" in explain.emulation_reason("pt", "fp16")
    assert explain.emulation_reason("mx", "fp16") is None  # MXNET_SAFE_ACCUMULATION=0: real kernels
    assert all(explain.emulation_reason("pt", r) is None for r in ("baseline", "+safe_accumulation", "all"))


def test_measure_recipes_times_in_repeats_and_says_what_it_did_not_time():
    from bertg4.checkpoint import Checkpoint, load_checkpoint, random_weights
    from bertg4.config import BertConfig
    cfg = BertConfig(2, 64, 2, 128, name="tiny")
    ckpt = Checkpoint(cfg, random_weights(cfg, 0), load_checkpoint("random:minilm_6_384_12").vocab, source="tiny")
    recs = explain.measure_recipes(["baseline", "fp16", "+true_fp16", "interleaved-fp32"], ["a film", "two hours"],
                                   [1, 2], repeats=2, checkpoint=ckpt, seq_length=16, iters=2, warmup=0)
    assert [r["recipe"] for r in recs] == ["baseline"] * 4 + ["fp16", "+true_fp16"] + ["interleaved-fp32"] * 4
    assert recs[4]["status"] == "emulation" and recs[5]["status"] == "not applicable"
    timed = [r for r in recs if r["status"] == "ok"]
    assert sorted((r["recipe"], r["repeat"], r["batch_size"]) for r in timed) == sorted(
        (n, i, b) for n in ("baseline", "interleaved-fp32") for i in range(2) for b in (1, 2))
    assert all(r["iterations"] == 2 and r["seq_length"] == 16 and r["model"] == "tiny" for r in timed)
    with pytest.raises(ValueError, match="repeats"):
        explain.measure_recipes(["baseline"], ["a"], [1], repeats=0, checkpoint=ckpt)


def test_bias_gelu_is_two_operators_when_run_eagerly():
    assert explain.bias_gelu_ops() == ["aten::add", "aten::gelu"]


def test_mx_switches_are_set_for_the_call_and_restored():
    from bertg4.mx import available
    if not available():
        pytest.skip("the mxnet extra is not installed")
    import os
    os.environ["MXNET_FC_TRUE_FP16"] = "keep"
    try:
        seen = explain.mx_switches("+true_fp16")
        assert seen["inside"] == {"MXNET_SAFE_ACCUMULATION": "1", "MXNET_FC_TRUE_FP16": "1"}
        assert seen["after"] == seen["before"] and seen["before"]["MXNET_FC_TRUE_FP16"] == "keep"
        assert explain.mx_switches("fp16")["inside"]["MXNET_SAFE_ACCUMULATION"] == "0"
    finally:
        del os.environ["MXNET_FC_TRUE_FP16"]
    assert explain.mx_status("cpu")["ok"]
