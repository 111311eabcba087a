"""The manifest beside every export (``bertg4_export.json``), shared by the engines.

An engine writes its own artifact (``model.pt2`` for PyTorch, ``model-symbol.json`` +
``model-0000.params`` for MXNet); this module writes and reads what every export needs
besides it: config, task, recipe, sequence length, the vocabulary (copied beside the
artifact) and where the weights came from.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

from .config import BertConfig
from .recipe import Recipe
from .system import MEMORY_NOTE
from .tasks import get_task
from .text import Tokenizer

MANIFEST = "bertg4_export.json"
FORMAT = "bertg4-export-1"


def write_manifest(directory: str, predictor, artifact: str, device_type: str, vocab, lowercase: bool,
                   **extra) -> str:
    """Write the manifest of ``predictor``'s export in ``directory``; copy its vocabulary there."""
    vocab_entry = None
    if isinstance(vocab, (list, tuple)):
        vocab_entry = list(vocab)
    elif vocab:
        target = os.path.join(directory, "vocab.txt")
        if os.path.abspath(vocab) != os.path.abspath(target):
            shutil.copyfile(vocab, target)
        vocab_entry = "vocab.txt"
    manifest = {
        "format": FORMAT, "engine": predictor.engine, "artifact": artifact,
        "config": predictor.config.to_dict(), "task": predictor.task.name,
        "dtype": predictor.recipe.dtype, "recipe": dataclasses.asdict(predictor.recipe),
        "device_type": device_type, "seq_length": predictor.seq_length, "vocab": vocab_entry,
        "lowercase": lowercase, "source": predictor.source,
        # how this process holds freed memory is not the artefact's: a reload notes its own
        "notes": [n for n in predictor.notes if not n.startswith(MEMORY_NOTE)], **extra,
    }
    path = os.path.join(directory, MANIFEST)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return path


def read_manifest(path: str, engine: str, engine_label: str) -> tuple[str, dict]:
    """``(directory, manifest)`` of an export of ``engine``; a clear error for anything else."""
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(f"{directory}: no {MANIFEST}; not a bertg4 export directory")
    with open(manifest_path, encoding="utf-8") as f:
        m = json.load(f)
    if m.get("format") != FORMAT or m.get("engine") != engine:
        raise ValueError(f"{manifest_path}: not {engine_label} bertg4 export "
                         f"(engine {m.get('engine')!r}, format {m.get('format')!r})")
    return directory, m


def predictor_fields(directory: str, m: dict) -> dict:
    """The predictor's constructor arguments a manifest holds (all but the model and device)."""
    cfg = BertConfig(**m["config"])
    vocab = m["vocab"]
    if isinstance(vocab, str):
        vocab = os.path.join(directory, vocab)
    tok = Tokenizer(vocab, lowercase=m["lowercase"], max_positions=cfg.max_position_embeddings) if vocab else None
    return dict(config=cfg, task=get_task(m["task"]), recipe=Recipe(**m["recipe"]), tokenizer=tok,
                seq_length=m["seq_length"], source=f"{m['source']} (exported: {directory})",
                notes=m["notes"], vocab=vocab, lowercase=m["lowercase"])
