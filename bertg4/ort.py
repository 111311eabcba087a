"""ONNX Runtime, the yardstick engine (``engine="ort"``; ``pip install -e '.[ort]'``).

What an ONNX Runtime user does with a BERT checkpoint: export the ``transformers`` model
(:class:`bertg4.hf.HFModule`, eager attention, float32: the graph
``onnxruntime.transformers.optimizer`` knows how to fuse) with ``torch.onnx.export``
(inputs ``input_ids``, ``token_types``, ``valid_length``; batch and sequence axes dynamic),
optimize it with ``optimize_model(model_type="bert")`` (fused ``EmbedLayerNormalization``,
``Attention``, ``SkipLayerNormalization``, ``BiasGelu``), and run it in an
``InferenceSession``: the CPU execution provider, or CUDA's when the device is ``cuda`` and
the installed onnxruntime has it.

Recipes: ``baseline`` is the optimized float32 graph; ``int8`` is ONNX Runtime's dynamic
INT8 quantization of it (``quantize_dynamic``, weights int8 per output channel, activations
quantized per call). Every other rung is bertg4's own ladder and not applicable here.
The ``.onnx`` files are cached under ``$BERTG4_CACHE`` (default ``~/.cache/bertg4``)
``/onnx``, keyed by the weights, task, head size and recipe.
"""
from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np

from .checkpoint import Checkpoint
from .predictor import Predictor
from .recipe import NotApplicable, Recipe, get_recipe
from .system import cpu_name
from .tasks import Task, get_task
from .text import Batch, Tokenizer

INSTALL = "pip install -e '.[ort]' (onnxruntime 1.32.0, onnx 1.23.2)"
RECIPES = ("baseline", "int8")
INPUTS = ("input_ids", "token_types", "valid_length")


class ORTUnavailable(RuntimeError):
    """ONNX Runtime (or onnx) is not installed; the message says how to install it."""


def import_ort():
    """``(onnxruntime, onnx)``; a clear error naming the install command when absent."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ORTUnavailable(f"engine 'ort' needs onnxruntime and onnx ({e}): {INSTALL}") from None
    return onnxruntime, onnx


def available() -> bool:
    try:
        import_ort()
    except ORTUnavailable:
        return False
    return True


def cache_dir() -> str:
    root = os.environ.get("BERTG4_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bertg4")
    return os.path.join(root, "onnx")


def weights_key(ckpt: Checkpoint) -> str:
    """A digest of the checkpoint's configuration and every weight array."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(sorted(ckpt.config.to_dict().items())).encode())
    for name in sorted(ckpt.weights):
        arr = np.ascontiguousarray(ckpt.weights[name])
        h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def check_recipe(recipe: Recipe) -> Recipe:
    base = "int8" if recipe.int8 else "baseline"
    if recipe.switches() != get_recipe(base).switches():
        raise NotApplicable(f"recipe {recipe.name}: the ort engine runs ONNX Runtime's own graph "
                            f"optimizations; its recipes are {', '.join(RECIPES)} (optimized float32 "
                            "graph, and its dynamic INT8)")
    return recipe


def export_onnx(ckpt: Checkpoint, task: Task, num_labels: int | None, path: str) -> str:
    """``torch.onnx.export`` of the transformers model (eager attention, float32)."""
    import torch
    from .hf import HFModule
    module = HFModule(ckpt, task, num_labels, "eager").eval()
    L = min(16, ckpt.config.max_position_embeddings)
    example = tuple(torch.from_numpy(a) for a in (np.ones((2, L), np.int64), np.zeros((2, L), np.int64),
                                                    np.array([L, L - 3], np.int64)))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "token_types": {0: "batch", 1: "seq"},
            "valid_length": {0: "batch"}, "output": {0: "batch"}}
    if task.kind == "qa":
        axes["output"] = {0: "batch", 1: "seq"}
    tmp = f"{path}.{os.getpid()}.tmp.onnx"  # processes sharing the cache never see half a file
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, tmp, dynamo=False, input_names=list(INPUTS),
                          output_names=["output"], dynamic_axes=axes, opset_version=17)
    os.replace(tmp, path)
    return path


def optimize(path: str, out: str, cfg, use_gpu: bool = False) -> dict:
    """``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``; returns the
    fused operators' counts."""
    from onnxruntime.transformers.optimizer import optimize_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(path, model_type="bert", num_heads=cfg.num_heads,
                               hidden_size=cfg.hidden_size, use_gpu=use_gpu)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    tmp = f"{out}.{os.getpid()}.tmp.onnx"
    model.save_model_to_file(tmp)
    with open(out + ".fused.txt", "w", encoding="utf-8") as f:
        f.write(repr(fused))
    os.replace(tmp, out)
    return fused


def quantize(path: str, out: str, per_channel: bool = True) -> str:
    """ONNX Runtime's dynamic INT8 quantization (``quantize_dynamic``: int8 weights, per output
    channel by default; activations quantized per call)."""
    import logging
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    tmp = f"{out}.{os.getpid()}.tmp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # its advice to pre-process: the graph is optimized already
        try:  # the fused contrib operators carry no inferred types: their outputs are float
            quantize_dynamic(path, tmp, weight_type=QuantType.QInt8, per_channel=per_channel,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
    os.replace(tmp, out)
    return out


def model_file(ckpt: Checkpoint, task: Task, recipe: Recipe, num_labels: int | None,
               use_gpu: bool = False) -> tuple[str, dict]:
    """The cached ``.onnx`` for (weights, task, labels, recipe): exported, optimized and, for
    ``int8``, quantized on first use. Returns its path and the fused operators' counts."""
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, f"{ckpt.config.name}-{weights_key(ckpt)}-{task.name}-{num_labels or 0}")
    raw, opt = stem + ".onnx", stem + f"-opt{'-gpu' if use_gpu else ''}.onnx"
    fused_path = opt + ".fused.txt"
    if not os.path.isfile(opt):
        if not os.path.isfile(raw):
            export_onnx(ckpt, task, num_labels, raw)
        optimize(raw, opt, ckpt.config, use_gpu)
    with open(fused_path, encoding="utf-8") as f:
        import ast
        fused = ast.literal_eval(f.read())
    if not recipe.int8:
        return opt, fused
    q = stem + "-int8.onnx"
    if not os.path.isfile(q):
        quantize(opt, q)
    return q, fused


class ORTPredictor(Predictor):
    """Runs an ONNX Runtime ``InferenceSession`` on numpy inputs."""

    engine = "ort"
    padding_modes = ("fixed", "longest")

    def __init__(self, session, *, path, providers, fused, **fields):
        super().__init__(**fields)
        self.session, self.path, self.providers, self.fused = session, path, providers, fused

    def prepare(self, batch: Batch):
        return {"input_ids": batch.input_ids, "token_types": batch.token_types,
                "valid_length": batch.valid_length}

    def run(self, staged):
        return self.session.run(None, staged)

    def synchronize(self) -> None:
        pass  # session.run returns host arrays: the device is done when it returns

    def to_numpy(self, outputs) -> np.ndarray:
        return np.asarray(outputs[0], dtype=np.float32)

    def device_name(self) -> str:
        if self.device.startswith("cuda"):
            import torch
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA GPU"
        return cpu_name()

    def describe(self) -> dict:
        return {**super().describe(), "onnx": self.path, "providers": self.providers,
                "fused_operators": self.fused}


def build(ckpt: Checkpoint, task: str | Task = "embedding", recipe: str | Recipe = "baseline",
          device: str = "cpu", seq_length: int = 128, tokenizer: Tokenizer | None = None,
          num_labels: int | None = None, threads: int | None = None) -> ORTPredictor:
    """A predictor on ONNX Runtime's optimized graph (``baseline``) or its dynamic INT8 (``int8``)."""
    ort, _ = import_ort()
    task, recipe = get_task(task), check_recipe(get_recipe(recipe))
    if task.kind == "encoding":
        raise NotApplicable("the ort engine exports the task heads (classification, regression, QA, "
                            "embedding), not the bare encoder")
    use_gpu = device.startswith("cuda")
    if use_gpu:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise NotApplicable(f"device {device}: onnxruntime {ort.__version__} has no CUDA execution "
                                "provider (install onnxruntime-gpu)")
        if recipe.int8:
            raise NotApplicable(f"recipe {recipe.name}: ONNX Runtime's dynamic INT8 runs on CPUs")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    elif device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise ValueError(f"unsupported device {device!r}: use cpu or cuda[:N]")
    if task.kind in ("classification", "regression"):
        num_labels = ckpt.num_labels() or num_labels or task.num_labels
    path, fused = model_file(ckpt, task, recipe, num_labels, use_gpu)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=providers)
    notes = list(ckpt.notes) + [f"ONNX Runtime {ort.__version__} ({session.get_providers()[0]}); "
                                f"fused: {fused}"]
    return ORTPredictor(session, path=path, providers=session.get_providers(), fused=fused,
                        config=ckpt.config, task=task, recipe=recipe, device=device,
                        tokenizer=tokenizer, seq_length=seq_length, source=ckpt.source, notes=notes)


__all__ = ["INSTALL", "ORTUnavailable", "ORTPredictor", "available", "build", "import_ort", "model_file"]
