"""The PyTorch engine: build a predictor from canonical weights, export it, reload it.

It runs every padding mode (:mod:`bertg4.padding`); ``packed`` runs
:class:`bertg4.pt.model.Packed`, the same weights with no padding in the token-wise
layers. :attr:`TorchPredictor.default_padding` says which mode is the fastest here.
"""
from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import torch

from ..system import MEMORY_NOTE, cpu_has_vnni, cpu_name, keep_freed_memory
from ..checkpoint import Checkpoint
from ..config import BertConfig
from ..exported import predictor_fields, read_manifest, write_manifest
from ..padding import MODES
from ..predictor import Predictor
from ..recipe import NotApplicable, Recipe, get_recipe
from ..tasks import Task, get_task
from ..padding import trim
from ..text import Batch, Tokenizer
from . import graph_pass
from . import matmul
from . import model as M
from .attention import varlen_kernel
from .cuda_graphs import CudaGraphs
from .numerics import fp16_accumulation

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch {torch.__version__} sees no "
                           "CUDA GPU; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use cpu or cuda[:N]")
    return dev


def check_applicable(recipe: Recipe, device: torch.device) -> None:
    """Refuse, with the reason, what this engine cannot do on this device."""
    if device.type != "cuda":
        if recipe.true_fp16:
            raise NotApplicable(
                f"recipe {recipe.name}: true FP16 (fp16 GEMM accumulation) is a cuBLAS setting and "
                "needs a CUDA GPU; on a CPU, bertg4.pt.numerics.emulated_fp16_matmul emulates its "
                "numerical effect")
        if recipe.cuda_graphs:
            raise NotApplicable(f"recipe {recipe.name}: CUDA graphs need a CUDA GPU")
        if recipe.onednn:
            from . import onednn
            if not onednn.available(recipe.int8):
                raise NotApplicable(f"recipe {recipe.name}: torch {torch.__version__} has no oneDNN "
                                    + ("INT8 Linear (torch.ops.onednn.qlinear_pointwise)" if recipe.int8
                                       else "prepacked Linear (torch.ops.mkldnn._linear_pointwise)"))
    elif recipe.int8:
        raise NotApplicable(f"recipe {recipe.name}: PyTorch's INT8 Linear layers (dynamic quantization, "
                            "oneDNN's INT8 Linear) run on a CPU")
    elif recipe.onednn:
        raise NotApplicable(f"recipe {recipe.name}: oneDNN's prepacked Linear is a CPU kernel; on a GPU "
                            "the graph pass's Linears run on cuBLAS (graph-pass rungs)")


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` (inductor): compiled on the first call of each new shape (later
    shapes of a varying dimension get one dynamic-shape graph), so a warm-up call keeps
    compile time out of the timed steady state."""
    return torch.compile(module, backend="inductor")


def task_module(cfg: BertConfig, task: Task, num_labels: int | None = None,
                **options) -> torch.nn.Module:
    if task.kind in ("classification", "regression"):
        return M.ForClassification(cfg, num_labels or task.num_labels, **options)
    if task.kind == "qa":
        return M.ForQuestionAnswering(cfg, **options)
    if task.kind == "embedding":
        return M.ForEmbedding(cfg, **options)
    raise ValueError(f"task kind {task.kind!r} has no PyTorch module")


class TorchPredictor(Predictor):
    """Runs any ``torch.nn.Module`` taking (input_ids, token_types, valid_length), and, when
    given, a ``packed`` module taking (input_ids, token_types, valid_length, token_index)."""

    engine = "pt"
    padding_modes = MODES
    # tokens of a packed batch are padded up to a multiple of this for CUDA graphs, so that
    # one captured graph serves many batches (filler tokens sit in unused grid slots)
    token_bucket = 64

    def __init__(self, module, *, config, task, recipe, device, tokenizer, seq_length=128,
                 source="", notes=None, engine=None, vocab=None, lowercase=True, packed=None,
                 onednn_matmul=False):
        dev = torch.device(device)
        # float32 matmuls all on oneDNN where it computes them in float32 (bertg4.pt.matmul):
        # the onednn rungs on a CPU, whose Linears already run there; every other rung, and the
        # hf reference as its users run it, keeps PyTorch's default
        shape = (config.hidden_size, config.num_heads, config.intermediate_size)
        self.float32_matmul = matmul.choice(dev, *shape) if onednn_matmul else None
        if onednn_matmul:
            notes = [n for n in (notes or []) if not n.startswith(matmul.NOTE)]
            said = matmul.note(dev, self.float32_matmul, *shape)
            notes += [said] if said else []
        super().__init__(config, task, recipe, str(device), tokenizer, seq_length, source, notes)
        if engine:
            self.engine = engine
        self.module, self.packed_module = module, packed
        if packed is None:
            self.padding_modes = ("fixed", "longest")
        self.torch_device = dev
        self._vocab, self._lowercase = vocab, lowercase
        check_applicable(recipe, self.torch_device)
        self._graphs = CudaGraphs(module) if recipe.cuda_graphs else None
        self._packed_graphs = CudaGraphs(packed) if recipe.cuda_graphs and packed is not None else None
        self.bucket_tokens = recipe.cuda_graphs
        self.graph_report = None  # what the graph pass changed, when it ran

    @property
    def default_padding(self) -> str:
        """``packed`` wherever this predictor has a packed module, else ``longest``.

        Measured on the CPU (fp32 and int8, embedded MiniLM, all 872 SST-2 dev sentences, batch
        32, an idle 2-core machine, median of 3 passes; ``results/2026-11-29_cpu_traffic*``):
        ``packed`` ran 1.13-1.20x ``longest`` in float32 and 1.05-1.12x in INT8, although it
        re-pads each batch for attention there. On a CUDA GPU FlashAttention's varlen kernel
        (fp16/bf16 ``sdpa`` rungs) runs the packed tokens with no re-padding at all;
        ``scripts/gpu_suite.sh`` records both modes to check the choice there."""
        return "packed" if "packed" in self.padding_modes else "longest"

    def prepare(self, batch: Batch):
        dev = self.torch_device
        return tuple(torch.from_numpy(a).to(dev, non_blocking=True)
                     for a in (batch.input_ids, batch.token_types, batch.valid_length))

    def prepare_packed(self, batch: Batch):
        """(input_ids, token_types, valid_length, token_index) for :class:`~bertg4.pt.model.Packed`:
        the batch cut to its longest row, and where each valid token sits in that grid."""
        if self.packed_module is None:
            return super().prepare_packed(batch)
        longest = int(batch.valid_length.max())
        if self.bucket_tokens:  # fewer distinct shapes to capture
            longest = self.padded_length(longest, batch.seq_len)
        rows = trim(batch, longest)
        grid = np.arange(longest)[None, :] < rows.valid_length[:, None]
        index = np.flatnonzero(grid)
        if self.bucket_tokens:
            want = min(grid.size, -(-index.size // self.token_bucket) * self.token_bucket)
            index = np.concatenate([index, np.flatnonzero(~grid)[:want - index.size]])
        dev = self.torch_device
        return tuple(torch.from_numpy(a).to(dev, non_blocking=True)
                     for a in (rows.input_ids, rows.token_types, rows.valid_length, index))

    def run(self, staged):
        """Padded inputs (3 tensors) run the module, packed inputs (4) the packed module."""
        accumulate = fp16_accumulation() if self.recipe.true_fp16 else contextlib.nullcontext()
        library = matmul.onednn_float32() if self.float32_matmul else contextlib.nullcontext()
        packed = len(staged) == 4
        graphs = self._packed_graphs if packed else self._graphs
        with torch.inference_mode(), accumulate, library:
            if graphs is not None:
                return graphs(*staged)
            return (self.packed_module if packed else self.module)(*staged)

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def to_numpy(self, outputs) -> np.ndarray:
        if isinstance(outputs, (tuple, list)):
            return tuple(self.to_numpy(o) for o in outputs)
        return outputs.detach().float().cpu().numpy()

    def device_name(self) -> str:
        if self.torch_device.type == "cuda":
            return torch.cuda.get_device_name(self.torch_device)
        return cpu_name()

    def reset_peak_memory(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.torch_device)

    def peak_memory_bytes(self) -> int | None:
        if self.torch_device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.torch_device))
        return None

    def export(self, directory: str) -> str:
        """``torch.export`` the model to ``directory/model.pt2`` (dynamic batch size and sequence
        length: ``fixed`` and ``longest``) and, where there is one, the packed model to
        ``directory/model-packed.pt2`` (dynamic batch size, grid length and token count)."""
        if self.recipe.onednn:
            raise NotApplicable(f"recipe {self.recipe.name}: oneDNN's prepacked weights are opaque tensors "
                                "of the running process and torch.export cannot carry them; export "
                                "graph-pass-fp32 (the same graph in float32, before "
                                f"{'quantizing and ' if self.recipe.int8 else ''}prepacking)")
        if self.recipe.int8:
            raise NotApplicable(f"recipe {self.recipe.name}: torch.export cannot export dynamically "
                                "quantized Linear layers; run the INT8 model as built")
        if self.recipe.compile:
            raise NotApplicable(f"recipe {self.recipe.name}: torch.compile is a just-in-time step of "
                                "the running process, not part of an exported program; export the "
                                "recipe without compile (the reloaded program can be compiled again)")
        os.makedirs(directory, exist_ok=True)
        L = self.seq_length
        batch = torch.export.Dim("batch", min=1, max=65536)
        seq = torch.export.Dim("seq", min=3, max=self.config.max_position_embeddings)
        example = Batch(np.zeros((2, L), np.int64), np.zeros((2, L), np.int64), np.full(2, L, np.int64))
        shapes = ({0: batch, 1: seq}, {0: batch, 1: seq}, {0: batch})
        path = os.path.join(directory, "model.pt2")
        _export(self.module, self.prepare(example), shapes, path)
        extra = {}
        if self.packed_module is not None:
            tokens = torch.export.Dim("tokens", min=1, max=65536 * self.config.max_position_embeddings)
            rows = Batch(np.zeros((3, L), np.int64), np.zeros((3, L), np.int64),
                         np.array([L, max(2, L - 1), 2], np.int64))
            shapes = ({0: batch, 1: seq}, {0: batch, 1: seq}, {0: batch}, {0: tokens})
            _export(self.packed_module, self.prepare_packed(rows), shapes,
                    os.path.join(directory, "model-packed.pt2"))
            extra["packed_artifact"] = "model-packed.pt2"
        write_manifest(directory, self, "model.pt2", self.torch_device.type, self._vocab, self._lowercase,
                       torch=torch.__version__, **extra)
        return path


def _export(module, args, shapes, path):
    with torch.inference_mode(False), torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=shapes)
    torch.export.save(program, path)


def _prepack(module, packed, report, recipe, tokenizer, seq_length, vocab_size, notes):
    """The graph-passed padded and packed graphs onto oneDNN's prepacked Linears (``int8``: its
    INT8 Linear, the Linear with the strongest input outliers kept float32)."""
    from . import onednn
    keep, qmax = frozenset(), 255
    if recipe.int8:
        from .quantize import calibration_inputs, describe, int8_report, keep_float
        qmax = 255 if cpu_has_vnni() else 127
        found = onednn.input_outliers(module, calibration_inputs(tokenizer, seq_length, vocab_size))
        ratios = {name: ratio for name, (ratio, _) in found.items()}
        kept = keep_float(ratios)
        keep = frozenset(found[name][1] for name in kept)
        notes.append(describe(int8_report(ratios, kept, 8 if qmax == 255 else 7),
                              "oneDNN INT8 Linear, activations quantized per call"))
    cache = {}  # the padded and the packed graph share their weights: pack each once
    module, prepacked = onednn.apply(module, cache, int8=recipe.int8, keep_float=keep, qmax=qmax)
    packed, counts = onednn.apply(packed, cache, int8=recipe.int8, keep_float=keep, qmax=qmax)
    if counts != prepacked:  # both graphs must run the same kernels on the same Linears
        raise RuntimeError(f"the padded and the packed graph were rewritten differently: {prepacked} vs {counts}")
    onednn.release(module, packed)
    if recipe.int8:
        with warnings.catch_warnings():  # torch marks its quantized tensors deprecated (warned once)
            warnings.simplefilter("ignore")
            onednn.quantize_input(torch.zeros(1, 1))
    kinds = {"onednn_linear_gelu": "Linear+GELU", "onednn_linear": "Linear",
             "onednn_qlinear_gelu": "INT8 Linear+GELU", "onednn_qlinear": "INT8 Linear"}
    notes.append("onednn: " + ", ".join(f"{n} {kinds[k]}" for k, n in prepacked.items() if n)
                 + " layers on oneDNN with prepacked weights")
    return module, packed, {**report, **prepacked}


def hold_freed_memory(notes: list[str], device: torch.device) -> list[str]:
    """On a CPU, have this process keep freed memory in its heap
    (:func:`bertg4.system.keep_freed_memory`: activations reuse it instead of page-faulting new
    pages); returns ``notes`` with this process's memory note in place of any earlier one."""
    notes = [n for n in notes if not n.startswith(MEMORY_NOTE)]
    if device.type == "cpu":
        held = keep_freed_memory()
        notes.append(MEMORY_NOTE + (held if held != "default" else
                                    "the C library's default allocator (freed activations may page-fault again)"))
    return notes


def build(ckpt: Checkpoint, task: str | Task = "embedding", recipe: str | Recipe = "baseline",
          device: str = "cpu", seq_length: int = 128, tokenizer: Tokenizer | None = None,
          num_labels: int | None = None) -> TorchPredictor:
    task, recipe = get_task(task), get_recipe(recipe)
    dev = resolve_device(device)
    check_applicable(recipe, dev)
    notes = hold_freed_memory(ckpt.notes, dev)
    if task.kind in ("classification", "regression"):
        num_labels = ckpt.num_labels() or num_labels or task.num_labels
    module = task_module(ckpt.config, task, num_labels, attention=recipe.attention,
                         safe=recipe.safe_accumulation)
    M.load_weights(module, ckpt.weights)
    module = module.to(dev, TORCH_DTYPES[recipe.dtype]).eval()
    if recipe.int8 and not recipe.onednn:
        from .quantize import calibration_inputs, describe, quantize_int8
        calib = calibration_inputs(tokenizer, seq_length, ckpt.config.vocab_size)
        module, int8_report = quantize_int8(module, calib)
        notes.append(describe(int8_report))
    packed = M.Packed(module).eval()  # the same weights (quantized ones too)
    report = None
    if recipe.graph_pass:
        shared = {}  # one prearranged QKV per layer for both graphs (and so one prepacked copy)
        module, report = graph_pass.apply(module, shared)
        packed, _ = graph_pass.apply(packed, shared)
        if recipe.onednn:
            module, packed, report = _prepack(module, packed, report, recipe, tokenizer, seq_length,
                                              ckpt.config.vocab_size, notes)
    if recipe.attention == "sdpa" and dev.type == "cuda" and \
            not varlen_kernel(TORCH_DTYPES[recipe.dtype], dev.type):
        notes.append("packed: this torch has no FlashAttention varlen kernel for this dtype/device; "
                     "packed attention re-pads each batch for SDPA")
    if recipe.compile:
        module, packed = compiled(module), compiled(packed)
    predictor = TorchPredictor(module, config=ckpt.config, task=task, recipe=recipe, device=dev,
                               tokenizer=tokenizer, seq_length=seq_length, source=ckpt.source,
                               notes=notes, vocab=ckpt.vocab, lowercase=ckpt.do_lower_case,
                               packed=packed, onednn_matmul=recipe.onednn)
    predictor.graph_report = report
    return predictor


def load_exported(path: str, device: str | None = None) -> TorchPredictor:
    """Reload what :meth:`TorchPredictor.export` wrote (a directory or its model.pt2)."""
    directory, m = read_manifest(path, "pt", "a PyTorch")
    device = device or m["device_type"]
    if torch.device(device).type != m["device_type"]:
        raise ValueError(f"{directory} was exported for {m['device_type']}, not "
                         f"{torch.device(device).type}; export again with --device {device}")
    dev = resolve_device(device)
    program = torch.export.load(os.path.join(directory, m["artifact"]))
    packed = None
    if m.get("packed_artifact"):
        packed = torch.export.load(os.path.join(directory, m["packed_artifact"])).module()
    fields = predictor_fields(directory, m)
    fields["notes"] = hold_freed_memory(fields["notes"], dev)
    return TorchPredictor(program.module(), device=dev, packed=packed, **fields)
