"""``bertg4.load``: one call from a model name to a ready predictor."""
from __future__ import annotations

import dataclasses

from .checkpoint import Checkpoint, add_head, load_checkpoint
from .config import BertConfig
from .predictor import Predictor
from .recipe import Recipe, get_recipe
from .tasks import Task, get_task
from .text import Tokenizer

ENGINES = ("pt", "hf", "mx", "ort")


def tokenizer_for(ckpt: Checkpoint) -> Tokenizer | None:
    if ckpt.vocab is None:
        return None
    return Tokenizer(ckpt.vocab, lowercase=ckpt.do_lower_case,
                     max_positions=ckpt.config.max_position_embeddings)


def with_task_head(ckpt: Checkpoint, task: Task, num_labels: int | None = None, seed: int = 0) -> Checkpoint:
    """``ckpt`` with ``task``'s head: its own, else the one shipped in ``bertg4/heads/`` for
    this encoder and task, else a seeded random one. The caller's checkpoint never changes:
    a head it lacks goes into a copy."""
    if task.head and task.head not in ckpt.heads:
        ckpt = dataclasses.replace(ckpt, weights=dict(ckpt.weights), notes=list(ckpt.notes))
        add_head(ckpt, task.head, num_labels=num_labels or task.num_labels, seed=seed, task=task.name)
    return ckpt


def load(model: str = "embedded", task: str | Task = "embedding", engine: str = "pt",
         recipe: str | Recipe = "baseline", device: str = "cpu", *, seq_length: int = 128,
         dtype: str | None = None, config: str | BertConfig | None = None,
         vocab: str | None = None, num_labels: int | None = None, seed: int = 0,
         checkpoint: Checkpoint | None = None) -> Predictor:
    """Load a model for a task on an engine and device; return a :class:`Predictor`.

    ``model``: ``"embedded"`` (all-MiniLM-L6-v2, offline), a Hugging Face folder, a
    GluonNLP ``.params`` file, or ``"random:bert_12_768_12"`` (random weights, for speed).
    ``task``: ``SST`` (and the other GLUE names), ``QA`` or ``embedding``.
    ``engine``: ``pt`` (PyTorch), ``hf`` (transformers, the reference), ``mx`` (MXNet 1.9 +
    GluonNLP, the ``mxnet`` extra) or ``ort`` (ONNX Runtime's optimized graph and its dynamic
    INT8, the ``ort`` extra: the yardstick, :mod:`bertg4.ort`).
    A task head the checkpoint lacks comes from ``bertg4/heads/`` when one is shipped for
    this encoder and task (the embedded model's SST-2 linear probe), otherwise it is
    initialised randomly (seeded); the predictor's ``notes`` say which. Use ``predictor.predict(texts)`` for answers and
    ``predictor(batch)`` for raw outputs.
    """
    task = get_task(task)
    recipe = get_recipe(recipe, dtype)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    ckpt = checkpoint or load_checkpoint(model, config=config, vocab=vocab, seed=seed)
    ckpt = with_task_head(ckpt, task, num_labels, seed)
    tok = tokenizer_for(ckpt)
    if tok is not None:
        tok.check_seq_len(seq_length)
    elif seq_length > ckpt.config.max_position_embeddings:
        raise ValueError(f"sequence length {seq_length} exceeds the model's "
                         f"{ckpt.config.max_position_embeddings} position embeddings")
    if engine == "pt":
        from .pt import build
    elif engine == "hf":
        from .hf import build
    elif engine == "mx":
        from .mx import build
    else:
        from .ort import build
    return build(ckpt, task, recipe, device, seq_length=seq_length, tokenizer=tok,
                 num_labels=num_labels)
