"""The PyTorch engine's dynamic INT8: 8-bit activations where the CPU has VNNI, the Linear
with the strongest input outliers kept float32, and the choice said in the notes."""
import copy

import torch

import bertg4
from bertg4.pt import quantize as Q
from bertg4.system import cpu_has_vnni


class Two(torch.nn.Module):
    def __init__(self, outlier: bool):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(64, 64)
        self.b = torch.nn.Linear(64, 8)
        self.outlier = outlier

    def forward(self, x):
        h = self.a(x)
        if self.outlier:  # two channels 40x the rest, as GELU outputs of BERT's first layer are
            h = h * torch.cat([torch.full((2,), 40.0), torch.ones(62)])
        return self.b(h)


def test_the_linear_with_outlier_inputs_stays_float32():
    x = (torch.randn(16, 64),)
    with_outliers, report = Q.quantize_int8(Two(True), x)
    assert report["kept_float32"] == ["b"] and report["outlier_ratio"]["b"] > Q.OUTLIER_RATIO
    assert type(with_outliers.b) is torch.nn.Linear and isinstance(with_outliers.a, Q.Linear8)
    plain, report = Q.quantize_int8(Two(False), x)
    assert report["kept_float32"] == [] and all(isinstance(m, Q.Linear8) for m in (plain.a, plain.b))
    assert report["activation_bits"] == (8 if cpu_has_vnni() else 7)


def test_activation_bits_suit_the_cpus_int8_kernel():
    """With VNNI, 8-bit activations halve 7-bit's rounding error. Without it, PyTorch's INT8
    kernel adds pairs of 8-bit products in 16 bits, which 8-bit activations overflow: the error
    grows instead, which is why ``quantize_int8`` takes 7 bits there unless told otherwise."""
    torch.manual_seed(1)
    lin, x = torch.nn.Linear(256, 256), torch.randn(64, 256)
    ref = lin(x).detach()
    err = {}
    for rr in (True, False):
        q, _ = Q.quantize_int8(torch.nn.Sequential(copy.deepcopy(lin)), None, reduce_range=rr)
        assert q[0].reduce_range is rr and f"activation_bits={7 if rr else 8}" in repr(q[0])
        err[rr] = float((q(x) - ref).abs().mean())
    if cpu_has_vnni():
        assert err[False] < 0.75 * err[True], err
    else:  # measured on a 2-core AMD EPYC with AVX2 and no VNNI: 0.031 against 0.0085
        assert err[False] > 1.5 * err[True], err


def test_int8_predictor_notes_say_what_was_quantized(embedded):
    p = bertg4.load("embedded", task="SST", recipe="int8")
    (note,) = [n for n in p.notes if n.startswith("INT8")]
    assert "kept float32: bert.layers.0.ffn2" in note and "max/median channel" in note
    assert type(p.module.bert.layers[0].ffn2) is torch.nn.Linear
    assert isinstance(p.module.bert.layers[0].ffn1, Q.Linear8)
