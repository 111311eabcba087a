"""The MXNet engine (``engine="mx"``): the original recipe, on MXNet 1.9 + GluonNLP 0.10.

As GluonNLP's ``scripts/bert/deploy.py`` does, the model is hybridized with
``static_alloc``/``static_shape``, exported to ``<prefix>-symbol.json`` +
``<prefix>-0000.params``, and re-imported for inference with
``mx.gluon.SymbolBlock.imports`` (``bertg4 deploy --engine mx``; ``--only-infer
--exported-model`` loads such an export without the original weights).

The recipe's switches map to MXNet's own: ``safe_accumulation`` ->
``MXNET_SAFE_ACCUMULATION``, ``true_fp16`` -> ``MXNET_FC_TRUE_FP16``, set by
:func:`mxnet_env` for the duration of each call and restored afterwards. MXNet reads them
when an operator executes (asynchronously, on its engine threads), so :meth:`run`
waits for its outputs before it restores the environment. The variables belong to the
process: run one predictor call at a time.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings

import numpy as np

from ..checkpoint import Checkpoint
from ..system import cpu_name, scoped_environ
from ..exported import predictor_fields, read_manifest, write_manifest
from ..predictor import Predictor
from ..recipe import NotApplicable, Recipe, get_recipe
from ..tasks import Task, get_task
from ..text import Batch, Tokenizer
from .compat import import_mxnet

mx, nlp = import_mxnet()

from . import graph_pass  # noqa: E402
from . import model as M  # noqa: E402

PREFIX = "model"


def mxnet_env(recipe: Recipe):
    """Set ``MXNET_SAFE_ACCUMULATION`` and ``MXNET_FC_TRUE_FP16`` from ``recipe``; restore on exit."""
    return scoped_environ({"MXNET_SAFE_ACCUMULATION": "1" if recipe.safe_accumulation else "0",
                           "MXNET_FC_TRUE_FP16": "1" if recipe.true_fp16 else "0"})


def resolve_context(device: str):
    if device == "cpu":
        return mx.cpu()
    if device.startswith("cuda") or device.startswith("gpu"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if mx.context.num_gpus() <= index:
            raise RuntimeError(f"device {device!r} requested but MXNet {mx.__version__} sees "
                               f"{mx.context.num_gpus()} GPU(s); a CUDA build (mxnet-cu102) and a "
                               "GPU are needed, or use --device cpu")
        return mx.gpu(index)
    raise ValueError(f"unsupported device {device!r}: use cpu or cuda[:N]")


def check_applicable(recipe: Recipe, ctx) -> None:
    """Refuse, with the reason, what MXNet cannot do on this device -- never fall back."""
    gpu = ctx.device_type == "gpu"
    if recipe.attention == "sdpa":
        raise NotApplicable(f"recipe {recipe.name}: MXNet 1.9 has no scaled_dot_product_attention; "
                            "its fused attention is the interleaved operators (attention='interleaved')")
    if recipe.dtype == "bfloat16":
        raise NotApplicable(f"recipe {recipe.name}: the mx engine runs float32 and float16 (GPU) only")
    if recipe.dtype == "float16" and not gpu:
        raise NotApplicable(f"recipe {recipe.name}: MXNet's float16 FullyConnected, softmax and "
                            "LayerNorm run on a GPU only; on a CPU this engine runs float32 rungs")
    if recipe.cuda_graphs:
        raise NotApplicable(f"recipe {recipe.name}: the mx engine does not capture CUDA graphs")
    if getattr(recipe, "onednn", False):
        raise NotApplicable(f"recipe {recipe.name}: the prepacked oneDNN Linear pass is PyTorch's; the mx "
                            "engine's CPU FullyConnected already runs on oneDNN")
    if getattr(recipe, "compile", False):
        raise NotApplicable(f"recipe {recipe.name}: torch.compile is a PyTorch step; the mx engine "
                            "has no compile")
    if recipe.int8 and gpu:
        raise NotApplicable(f"recipe {recipe.name}: MXNet's INT8 (oneDNN) quantization is for CPUs")


def length_buckets(seq_len: int, smallest: int = 16) -> tuple[int, ...]:
    """The sequence lengths a ``longest`` batch is padded to: 16, 32, 64, 128, ... below
    ``seq_len``, then ``seq_len`` itself."""
    out, b = [], smallest
    while b < seq_len:
        out.append(b)
        b *= 2
    return tuple(out) + (int(seq_len),)


class MXNetPredictor(Predictor):
    """Runs a GluonNLP ``HybridBlock`` or an imported ``SymbolBlock``.

    Padding: ``fixed`` and ``longest``. As a GluonNLP user batches variable-length text, a
    ``longest`` batch is padded up to a length bucket (:func:`length_buckets`: 16, 32, 64,
    128, ..., capped by and including the sequence length), and every bucket runs its own
    static-shape executor: a ``SymbolBlock`` over the same graph and the same parameters
    (nothing copied), hybridized with ``static_alloc``/``static_shape``, built on the first
    batch of that length and kept. ``packed`` is not applicable: MXNet 1.9 and GluonNLP 0.10
    have no variable-length attention over concatenated sequences.
    """

    engine = "mx"
    padding_modes = ("fixed", "longest")

    def __init__(self, block, *, config, task, recipe, device, tokenizer, seq_length=128,
                 source="", notes=None, vocab=None, lowercase=True, exported=None):
        super().__init__(config, task, recipe, device, tokenizer, seq_length, source, notes)
        self.block = block
        self.ctx = resolve_context(device)
        check_applicable(recipe, self.ctx)
        self._vocab, self._lowercase = vocab, lowercase
        self.exported = exported  # the directory holding symbol + params, once exported
        self.graph_report = None
        self._executors: dict[int, object] = {}  # sequence length -> static-shape SymbolBlock
        self._graph = None

    @property
    def default_padding(self) -> str:
        """``longest`` (length buckets), chosen by measurement: on the CPU, over SST-2 dev
        sentences at batch 32, it computed under a third of ``fixed``'s tokens (padding waste
        about 1.5 against 5.1) and ran faster than ``fixed`` (``bertg4 bench --model embedded
        --engine mx --traffic sst2-dev --padding fixed --padding longest`` measures it)."""
        return "longest"

    def padded_length(self, longest: int, seq_len: int) -> int:
        """The smallest length bucket (:func:`length_buckets`) holding ``longest`` tokens."""
        return next(b for b in length_buckets(seq_len) if b >= min(int(longest), int(seq_len)))

    def _check_mode(self, padding) -> str:
        if padding == "packed":
            raise NotApplicable("engine mx: padding 'packed' needs attention over concatenated "
                                "variable-length sequences, which MXNet 1.9 and GluonNLP 0.10 do not "
                                "have; the mx engine runs fixed and longest (length buckets 16/32/64/...)")
        return super()._check_mode(padding)

    def executor(self, seq_len: int):
        """The static-shape block for inputs of ``seq_len`` columns (built on first use); a block
        that is not a ``HybridBlock`` (a plain function of NDArrays) has no graph and runs as is."""
        if not isinstance(self.block, mx.gluon.HybridBlock):
            return self.block
        ex = self._executors.get(seq_len)
        if ex is None:
            if self._graph is None:
                inputs = [mx.sym.var(f"data{i}") for i in range(3)]
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*Cannot decide type.*")
                    out = self.block(*inputs)
                self._graph = (out, inputs)
            out, inputs = self._graph
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Cannot decide type.*")
                ex = mx.gluon.SymbolBlock(out, inputs, params=self.block.collect_params())
            ex.hybridize(static_alloc=True, static_shape=True)
            self._executors[seq_len] = ex
        return ex

    @property
    def dtype(self) -> str:
        return net_dtype(self.recipe)

    def prepare(self, batch: Batch):
        ctx = self.ctx
        # token ids stay float32 (exact up to 2**24); lengths follow the network's dtype,
        # which GluonNLP's encoder adds to an arange of that dtype
        return (mx.nd.array(batch.input_ids, ctx=ctx, dtype="float32"),
                mx.nd.array(batch.token_types, ctx=ctx, dtype="float32"),
                mx.nd.array(batch.valid_length, ctx=ctx, dtype=self.dtype))

    def run(self, staged):
        block = self.executor(int(staged[0].shape[1]))
        with mxnet_env(self.recipe):
            return _wait(block(*staged))

    def synchronize(self) -> None:
        mx.nd.waitall()

    def to_numpy(self, outputs) -> np.ndarray:
        if isinstance(outputs, (tuple, list)):
            return tuple(self.to_numpy(o) for o in outputs)
        return outputs.asnumpy().astype(np.float32)

    def device_name(self) -> str:
        if self.ctx.device_type == "gpu":
            return gpu_name(self.ctx.device_id)
        return cpu_name()

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None  # MXNet 1.9 reports its pool's current use, never a peak: not recorded

    def export(self, directory: str) -> str:
        """Symbol + params (``model-symbol.json``, ``model-0000.params``) and a manifest."""
        os.makedirs(directory, exist_ok=True)
        if self.exported and os.path.abspath(self.exported) != os.path.abspath(directory):
            for suffix in ("-symbol.json", "-0000.params"):
                shutil.copyfile(os.path.join(self.exported, PREFIX + suffix),
                                os.path.join(directory, PREFIX + suffix))
        elif not self.exported:
            _export_block(self.block, self.seq_length, directory, self.ctx, self.dtype)
        device_type = "cuda" if self.ctx.device_type == "gpu" else "cpu"  # the names pt uses
        write_manifest(directory, self, PREFIX, device_type, self._vocab, self._lowercase,
                       mxnet=mx.__version__, gluonnlp=nlp.__version__, graph_pass=self.graph_report)
        return os.path.join(directory, PREFIX + "-symbol.json")


def net_dtype(recipe: Recipe) -> str:
    """The network's dtype on this engine: float16 for the fp16 rungs, float32 otherwise."""
    return "float16" if recipe.dtype == "float16" else "float32"


def _wait(out):
    """Wait until the operators producing ``out`` (an NDArray or a tuple of them) have run."""
    for o in (out if isinstance(out, (tuple, list)) else (out,)):
        o.wait_to_read()
    return out


def gpu_name(index: int) -> str:
    try:  # MXNet has no device-name call; torch (always installed with bertg4) has
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 -- a name is a label, never a reason to fail
        pass
    return f"CUDA GPU {index}"


def _inputs(seq_length: int, ctx, dtype: str):
    ids = mx.nd.ones((2, seq_length), ctx=ctx, dtype="float32")
    return ids, mx.nd.zeros((2, seq_length), ctx=ctx, dtype="float32"), \
        mx.nd.full((2,), seq_length, ctx=ctx, dtype=dtype)


def _export_block(block, seq_length: int, directory: str, ctx, dtype: str) -> str:
    """Hybridize (static alloc/shape), run once, ``export`` -- as GluonNLP's deploy.py does."""
    if not getattr(block, "_active", False):
        block.hybridize(static_alloc=True, static_shape=True)
    _wait(block(*_inputs(seq_length, ctx, dtype)))
    prefix = os.path.join(directory, PREFIX)
    block.export(prefix, epoch=0)
    return prefix


def import_block(directory: str, ctx):
    """``SymbolBlock.imports`` of an export (the only-infer path)."""
    prefix = os.path.join(directory, PREFIX)
    with warnings.catch_warnings():  # the inputs' types are set by the first call
        warnings.filterwarnings("ignore", message=".*Cannot decide type.*")
        block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data0", "data1", "data2"],
                                             prefix + "-0000.params", ctx=ctx)
    block.hybridize(static_alloc=True, static_shape=True)
    return block


def build(ckpt: Checkpoint, task: str | Task = "embedding", recipe: str | Recipe = "baseline",
          device: str = "cpu", seq_length: int = 128, tokenizer: Tokenizer | None = None,
          num_labels: int | None = None, calibration: Batch | None = None) -> MXNetPredictor:
    task, recipe = get_task(task), get_recipe(recipe)
    ctx = resolve_context(device)
    check_applicable(recipe, ctx)
    if task.kind in ("classification", "regression"):
        num_labels = ckpt.num_labels() or num_labels or task.num_labels
    block = M.build_block(ckpt, task.kind, num_labels or 2,
                          attention="naive" if recipe.attention == "naive" else "interleaved", ctx=ctx)
    if net_dtype(recipe) == "float16":
        block.cast("float16")
    block.hybridize(static_alloc=True, static_shape=True)
    common = dict(config=ckpt.config, task=task, recipe=recipe, device=device, tokenizer=tokenizer,
                  seq_length=seq_length, source=ckpt.source, notes=ckpt.notes, vocab=ckpt.vocab,
                  lowercase=ckpt.do_lower_case)
    if recipe.int8:
        from .quantize import quantize_block
        if calibration is None:
            from ..data import calibration_batch
            calibration = calibration_batch(tokenizer, seq_length, ckpt.config.vocab_size)
        predictor = MXNetPredictor(quantize_block(block, calibration, ctx), **common)
        predictor.notes = predictor.notes + [f"INT8: oneDNN quantization calibrated on {len(calibration)} "
                                             "sequences (calib_mode naive)"]
        return predictor
    if not recipe.graph_pass:
        return MXNetPredictor(block, **common)
    # the pass rewrites the exported graph: export to a private folder (removed with the
    # predictor), rewrite, re-import
    folder = tempfile.TemporaryDirectory(prefix="bertg4-mx-")
    _export_block(block, seq_length, folder.name, ctx, net_dtype(recipe))
    report = graph_pass.apply_files(os.path.join(folder.name, PREFIX))
    if not (report["qkv_prearranged"] and report["bias_gelu_split"]):
        raise graph_pass.GraphPassError(
            f"recipe {recipe.name}: the graph pass found nothing to rewrite in this graph ({report['qkv_prearranged']} "
            f"QKV tensors, {report['bias_gelu_split']} bias+GELU); refusing to run it as the pass's rung")
    predictor = MXNetPredictor(import_block(folder.name, ctx), exported=folder.name, **common)
    predictor._folder = folder
    predictor.graph_report = report
    return predictor


def load_exported(path: str, device: str | None = None) -> MXNetPredictor:
    """Reload what :meth:`MXNetPredictor.export` wrote (the directory or its symbol file)."""
    directory, m = read_manifest(path, "mx", "an MXNet")
    device = device or m["device_type"]
    predictor = MXNetPredictor(import_block(directory, resolve_context(device)), device=device,
                               exported=directory, **predictor_fields(directory, m))
    predictor.graph_report = m.get("graph_pass")
    return predictor
