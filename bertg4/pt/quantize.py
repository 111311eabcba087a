"""Dynamic INT8 for the PyTorch engine on a CPU, and where its error comes from.

Every ``nn.Linear`` gets int8 weights, one scale per output channel, and its input is
quantized per call to 8 bits with one scale for the whole tensor (PyTorch's dynamic
quantization on FBGEMM). Two things decide how far the answers move from float32's:

- **Activation range.** ``torch.ao.nn.quantized.dynamic.Linear`` quantizes activations with
  ``reduce_range=True``: 7 bits, a guard against overflowing the 16-bit intermediate sums of
  the ``vpmaddubsw`` instruction on CPUs without VNNI. A CPU with VNNI (``avx512_vnni``,
  ``avx_vnni``, ``amx_int8``) multiplies and accumulates 8-bit products straight into 32
  bits, so :class:`Linear8` uses all 8 bits there (half the rounding step).
- **Outlier channels.** One scale per tensor is set by the largest value; a few input
  channels far larger than the rest leave the others a handful of levels. :func:`outliers`
  measures each Linear's inputs on calibration sentences (largest channel maximum over the
  median channel maximum); the Linear with the strongest outliers stays float32 when that
  ratio reaches ``OUTLIER_RATIO``.

Measured on the MiniLM fine-tuned on SST-2 (``bertg4 finetune --task SST --schedule cpu``),
all 872 SST-2 dev sentences, agreement of the int8 labels with float32's on the 2-core AMD
EPYC with VNNI: 7-bit activations on every Linear 96.8 %; 8-bit 98.6 %; 8-bit with layer
0's FFN output projection (inputs: GELU outputs up to 25 against a median channel of 1.0,
the strongest outliers of the model) kept float32, 99.3 %. Quantizing that one Linear alone
(the rest float32) already costs 1.3 points; any other single Linear at most 0.8.
"""
from __future__ import annotations

import warnings

import torch
from torch.ao.nn.quantized import dynamic as nnqd

from ..system import cpu_has_vnni

#: keep the Linear with the strongest outlier channel float32 when its ratio reaches this
OUTLIER_RATIO = 10.0


class Linear8(nnqd.Linear):
    """A dynamically quantized Linear that says whether its activations use 7 or 8 bits."""

    def __init__(self, *args, reduce_range: bool = True, **kw):
        super().__init__(*args, **kw)
        self.reduce_range = bool(reduce_range)

    def forward(self, x):
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                  reduce_range=self.reduce_range)

    def extra_repr(self):
        return super().extra_repr() + f", activation_bits={7 if self.reduce_range else 8}"

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False, reduce_range: bool = True):
        q = nnqd.Linear.from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
        q.__class__ = cls
        q.reduce_range = bool(reduce_range)
        return q


def linears(module: torch.nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


def channel_amax(x: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Each input channel's largest |x| (the last dimension), merged with ``seen`` so far."""
    a = x.detach().abs().reshape(-1, x.shape[-1]).amax(0)
    return a if seen is None else torch.maximum(seen, a)


def outlier_ratio(amax: torch.Tensor) -> float:
    """The largest channel maximum over the median channel's: how far one scale per tensor
    is stretched by a few channels."""
    return float(amax.max() / amax.median().clamp(min=1e-12))


@torch.no_grad()
def outliers(module: torch.nn.Module, inputs: tuple) -> dict[str, float]:
    """Per Linear: its inputs' :func:`outlier_ratio` on one float32 call ``module(*inputs)``."""
    amax, hooks = {}, []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Linear):
            def hook(mod, args, out, name=name):
                amax[name] = channel_amax(args[0], amax.get(name))
            hooks.append(m.register_forward_hook(hook))
    try:
        module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return {n: outlier_ratio(a) for n, a in amax.items()}


def keep_float(ratios: dict[str, float], threshold: float = OUTLIER_RATIO) -> list[str]:
    """The Linear with the strongest outliers, when its ratio reaches ``threshold``."""
    if not ratios:
        return []
    name = max(ratios, key=ratios.get)
    return [name] if ratios[name] >= threshold else []


def calibration_inputs(tokenizer, seq_length: int, vocab_size: int) -> tuple:
    """The module's inputs for :func:`outliers`: :func:`bertg4.data.calibration_batch` cut
    to its longest row, as tensors ``(input_ids, token_types, valid_length)``."""
    from ..data import calibration_batch
    from ..padding import trim
    calib = calibration_batch(tokenizer, seq_length, vocab_size)
    calib = trim(calib, int(calib.valid_length.max()))
    return tuple(torch.from_numpy(a) for a in (calib.input_ids, calib.token_types, calib.valid_length))


def int8_report(ratios: dict[str, float], kept: list[str], activation_bits: int) -> dict:
    """What :func:`describe` says: activation bits, the Linears kept float32, every outlier
    ratio (strongest first)."""
    return {"activation_bits": activation_bits, "kept_float32": kept,
            "outlier_ratio": {n: round(r, 2) for n, r in sorted(ratios.items(), key=lambda kv: -kv[1])}}


def quantize_linears(module: torch.nn.Module, names, reduce_range: bool) -> torch.nn.Module:
    """Replace the Linears ``names`` of ``module`` (in place) by :class:`Linear8`s."""
    from torch.ao.quantization import per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated, not removed
        warnings.simplefilter("ignore")
        for name in names:
            parent, _, leaf = name.rpartition(".")
            owner = module.get_submodule(parent) if parent else module
            lin = getattr(owner, leaf)
            lin.qconfig = per_channel_dynamic_qconfig
            setattr(owner, leaf, Linear8.from_float(lin, reduce_range=reduce_range))
    return module


def quantize_int8(module: torch.nn.Module, calibration: tuple | None = None,
                  reduce_range: bool | None = None) -> tuple[torch.nn.Module, dict]:
    """Replace every ``nn.Linear`` of ``module`` (in place) by a :class:`Linear8`, except the
    one :func:`keep_float` picks from ``calibration`` (the module's inputs, one call).

    ``reduce_range`` None: 7-bit activations unless this CPU has VNNI. Returns the module and
    a report: activation bits, the Linears kept float32 and every outlier ratio.
    """
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    ratios = outliers(module, calibration) if calibration is not None else {}
    kept = keep_float(ratios)
    quantize_linears(module, [n for n in linears(module) if n not in kept], reduce_range)
    return module, int8_report(ratios, kept, 7 if reduce_range else 8)


def describe(report: dict, method: str = "dynamic quantization") -> str:
    kept = ", ".join(report["kept_float32"]) or "none"
    top = next(iter(report["outlier_ratio"].items()), None)
    return (f"INT8: {method}, per-channel int8 weights, {report['activation_bits']}-bit activations "
            f"({'VNNI' if report['activation_bits'] == 8 else 'no VNNI: 7 bits against overflow'}); kept float32: "
            f"{kept}" + (f" (strongest input outliers: {top[0]}, max/median channel {top[1]:.1f})" if top else ""))
