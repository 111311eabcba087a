"""The engine-neutral predictor interface every engine implements.

An engine's ``build`` returns a :class:`Predictor`. Benchmarks and notebooks only
use this interface: ``prepare`` stages a :class:`~bertg4.text.Batch` on the
device, ``run`` launches the model, ``synchronize`` waits for the device, and
``to_numpy`` brings outputs back -- so timing code never knows which engine it times.
"""
from __future__ import annotations

import numpy as np

from .config import BertConfig
from .recipe import Recipe
from .tasks import Task, best_spans
from .text import Batch, QAFeatures, Tokenizer, check_batch_size


class Predictor:
    engine = "?"

    def __init__(self, config: BertConfig, task: Task, recipe: Recipe, device: str,
                 tokenizer: Tokenizer | None, seq_length: int = 128, source: str = "",
                 notes: list[str] | None = None):
        self.config, self.task, self.recipe, self.device = config, task, recipe, device
        self.tokenizer, self.seq_length, self.source = tokenizer, seq_length, source
        self.notes = list(notes or [])

    # --- engine-specific -------------------------------------------------------------
    def prepare(self, batch: Batch):
        raise NotImplementedError

    def run(self, staged):
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def to_numpy(self, outputs) -> np.ndarray:
        raise NotImplementedError

    def device_name(self) -> str:
        raise NotImplementedError

    def export(self, directory: str) -> str:
        raise NotImplementedError(f"engine {self.engine} cannot export")

    # --- shared ----------------------------------------------------------------------
    def __call__(self, batch: Batch) -> np.ndarray:
        """Raw outputs for one batch: logits ``(B, labels)``, QA ``(B, seq, 2)`` or embeddings."""
        return self.to_numpy(self.run(self.prepare(batch)))

    def infer(self, batch: Batch, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Outputs for a batch of any size, computed ``batch_size`` rows at a time."""
        check_batch_size(batch_size)
        parts = batch.batches(batch_size)
        if progress:
            from tqdm.auto import tqdm
            parts = tqdm(parts, total=-(-len(batch) // batch_size), desc="inference", unit="batch")
        return np.concatenate([self(b) for b in parts])

    def featurize(self, texts, seq_length: int | None = None):
        """Text -> Batch (or QAFeatures) as this predictor's task expects."""
        if self.tokenizer is None:
            raise ValueError("this predictor has no vocabulary; give vocab= when loading")
        L = seq_length or self.seq_length
        if self.task.kind == "qa":
            questions, contexts = _split_pairs(texts, "(question, context)")
            return self.tokenizer.encode_squad(questions, contexts, seq_len=L,
                                               max_query_length=min(64, L // 2))
        if self.task.pair:
            first, second = _split_pairs(texts, "(sentence, sentence)")
            return self.tokenizer.encode_pairs(first, second, seq_len=L)
        return self.tokenizer.encode_sentences(texts, seq_len=L)

    def predict(self, texts, batch_size: int = 32, seq_length: int | None = None):
        """Labels (classification), scores (regression), answers (QA) or unit vectors (embedding)."""
        feats = self.featurize(texts, seq_length)
        batch = feats.batch if isinstance(feats, QAFeatures) else feats
        out = self.infer(batch, batch_size)
        if self.task.kind == "classification":
            return out.argmax(-1)
        if self.task.kind == "regression":
            return out[:, 0]
        if self.task.kind == "qa":
            return best_spans(out, feats)
        return out

    def describe(self) -> dict:
        return {"engine": self.engine, "task": self.task.name, "recipe": self.recipe.name,
                "dtype": self.recipe.dtype, "device": self.device,
                "device_name": self.device_name(), "model": self.config.name,
                "source": self.source, "seq_length": self.seq_length, "notes": self.notes}


def _split_pairs(texts, what):
    if isinstance(texts, str):
        raise ValueError(f"expected a list of {what} pairs, got a single string")
    pairs = list(texts)
    if not pairs or any(not isinstance(p, (tuple, list)) or len(p) != 2 for p in pairs):
        raise ValueError(f"this task takes a non-empty list of {what} pairs")
    return [p[0] for p in pairs], [p[1] for p in pairs]
