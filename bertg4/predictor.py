"""The engine-neutral predictor interface every engine implements.

An engine's ``build`` returns a :class:`Predictor`. Benchmarks and notebooks only
use this interface: ``prepare`` stages a :class:`~bertg4.text.Batch` on the
device, ``run`` launches the model, ``synchronize`` waits for the device, and
``to_numpy`` brings outputs back -- so timing code never knows which engine it times.

Bulk work (``infer``, ``predict``) runs in a padding mode (:mod:`bertg4.padding`): rows
sorted by length and batched, each batch padded only to its longest row (``longest``) or
not padded at all (``packed``), and the outputs returned in the caller's order with the
shapes ``fixed`` gives. ``stage`` + ``run`` + ``finish`` is one batch in one mode, split so
that timing code can time ``run`` alone.
"""
from __future__ import annotations

import numpy as np

from .config import BertConfig
from .padding import check_padding, length_batches, padding_waste, trim
from .recipe import NotApplicable, Recipe
from .tasks import Task, best_spans
from .text import Batch, QAFeatures, Tokenizer, check_batch_size


class Predictor:
    engine = "?"
    padding_modes: tuple[str, ...] = ("fixed", "longest")

    def __init__(self, config: BertConfig, task: Task, recipe: Recipe, device: str,
                 tokenizer: Tokenizer | None, seq_length: int = 128, source: str = "",
                 notes: list[str] | None = None):
        self.config, self.task, self.recipe, self.device = config, task, recipe, device
        self.tokenizer, self.seq_length, self.source = tokenizer, seq_length, source
        self.notes = list(notes or [])
        self.last_infer_stats: dict = {}

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

    def prepare_packed(self, batch: Batch):
        raise NotApplicable(f"engine {self.engine} has no packed mode; choose one of "
                            f"{', '.join(self.padding_modes)}")

    # --- shared ----------------------------------------------------------------------
    @property
    def default_padding(self) -> str:
        """The fastest exact mode: ``longest`` (sorted rows padded to the longest of their
        batch) computes the fewest tokens every engine can; engines with a packed mode
        override this with what they measured."""
        return "longest"

    def padded_length(self, longest: int, seq_len: int) -> int:
        """What a ``longest`` batch whose longest row has ``longest`` tokens is padded to:
        the next multiple of 8, at most ``seq_len``."""
        return min(int(seq_len), -(-int(longest) // 8) * 8)

    def __call__(self, batch: Batch) -> np.ndarray:
        """Raw outputs for one batch as it is shaped: logits ``(B, labels)``, QA ``(B, seq, 2)``
        or embeddings."""
        return self.to_numpy(self.run(self.prepare(batch)))

    def _check_mode(self, padding) -> str:
        padding = check_padding(padding)
        if padding not in self.padding_modes:
            raise NotApplicable(f"engine {self.engine}: padding {padding!r} is not available; "
                                f"choose one of {', '.join(self.padding_modes)}")
        return padding

    def computed_tokens(self, batch: Batch, padding: str) -> int:
        """Token positions the model computes for ``batch`` in mode ``padding``."""
        if padding == "fixed":
            return len(batch) * batch.seq_len
        if padding == "longest":
            return len(batch) * self.padded_length(int(batch.valid_length.max()), batch.seq_len)
        return int(batch.valid_length.sum())

    def stage(self, batch: Batch, padding: str = "fixed"):
        """``batch`` on the device, shaped for ``padding`` (what :meth:`run` takes)."""
        padding = self._check_mode(padding)
        if padding == "fixed":
            return self.prepare(batch)
        if padding == "longest":
            return self.prepare(trim(batch, self.padded_length(int(batch.valid_length.max()),
                                                              batch.seq_len)))
        return self.prepare_packed(batch)

    def finish(self, outputs: np.ndarray, batch: Batch, padding: str) -> np.ndarray:
        """Host outputs of a staged run in ``padding`` -> the shape ``fixed`` gives. Per-token
        outputs (QA) get -inf at positions at or beyond each row's valid_length."""
        if self.task.kind != "qa" or padding == "fixed":
            return outputs
        full = np.full((len(batch), batch.seq_len) + outputs.shape[2 - (padding == "packed"):],
                       -np.inf, dtype=outputs.dtype)
        valid = np.arange(batch.seq_len)[None, :] < batch.valid_length[:, None]
        if padding == "packed":  # (tokens, 2), rows' tokens in order (then any bucket filler)
            full[valid] = outputs[:int(batch.valid_length.sum())]
        else:
            full[valid] = outputs[valid[:, :outputs.shape[1]]]
        return full

    def run_batch(self, batch: Batch, padding: str) -> np.ndarray:
        """Outputs for one already-formed batch in mode ``padding`` (in its row order)."""
        return self.finish(self.to_numpy(self.run(self.stage(batch, padding))), batch, padding)

    def infer(self, batch: Batch, batch_size: int = 32, progress: bool = False,
              padding: str | None = None) -> np.ndarray:
        """Outputs for a batch of any size, ``batch_size`` rows at a time, in the caller's row
        order. ``padding`` (default :attr:`default_padding`): ``fixed`` runs the rows in order
        as shaped; ``longest`` and ``packed`` sort them by length first."""
        check_batch_size(batch_size)
        padding = self._check_mode(self.default_padding if padding is None else padding)
        if not len(batch):
            raise ValueError("infer needs at least one row")
        if padding == "fixed":
            groups = [np.arange(i, min(i + batch_size, len(batch))) for i in range(0, len(batch), batch_size)]
        else:
            groups = length_batches(batch.valid_length, batch_size)
        if progress:
            from tqdm.auto import tqdm
            groups = tqdm(groups, desc="inference", unit="batch")
        out, computed = None, 0
        for idx in groups:
            part = batch[idx]
            result = self.run_batch(part, padding)
            if out is None:
                out = np.empty((len(batch),) + result.shape[1:], dtype=result.dtype)
            out[idx] = result
            computed += self.computed_tokens(part, padding)
        self.last_infer_stats = {"padding": padding, "rows": len(batch),
                                 "real_tokens": int(batch.valid_length.sum()),
                                 "computed_tokens": computed,
                                 "padding_waste": padding_waste(batch.valid_length, computed)}
        return out

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

    def predict(self, texts, batch_size: int = 32, seq_length: int | None = None,
                padding: str | None = None):
        """Labels (classification), scores (regression), answers (QA) or unit vectors (embedding)."""
        check_batch_size(batch_size)
        if padding is not None:
            self._check_mode(padding)
        feats = self.featurize(texts, seq_length)
        batch = feats.batch if isinstance(feats, QAFeatures) else feats
        out = self.infer(batch, batch_size, padding=padding)
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
