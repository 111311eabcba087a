"""The measured demonstrations behind notebooks 02-05 (bertg4.explain)."""
import numpy as np

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
    assert demo["max_abs_difference"] < 1e-5
    assert demo["second_pass"] == {"bias_gelu_fused": 0, "qkv_prearranged": 0}
    slots = explain.qkv_slots(demo["after"].module, embedded, layer=5)
    assert [slots[s][n] for s, n in zip("qkv", ("query", "key", "value"))] == [0.0, 0.0, 0.0]
    assert slots["v"]["key"] > 0 and slots["v"]["query"] > 0
    code = explain.layer_code(demo["after"].module, 0)
    assert "qkv_weight" in code and "bias_gelu" in code and "interleave_qkv" not in code
