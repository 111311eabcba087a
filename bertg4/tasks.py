"""Tasks: what a model's output means, how it is post-processed and scored."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str
    kind: str            # "classification", "regression", "qa" or "embedding"
    num_labels: int = 0  # classification/regression outputs
    pair: bool = False   # sentence-pair input

    @property
    def head(self) -> str | None:
        return {"classification": "classifier", "regression": "classifier",
                "qa": "qa_outputs"}.get(self.kind)


TASKS = {t.name: t for t in [
    Task("SST", "classification", 2),
    Task("CoLA", "classification", 2),
    Task("MRPC", "classification", 2, pair=True),
    Task("QQP", "classification", 2, pair=True),
    Task("QNLI", "classification", 2, pair=True),
    Task("RTE", "classification", 2, pair=True),
    Task("WNLI", "classification", 2, pair=True),
    Task("MNLI", "classification", 3, pair=True),
    Task("STS-B", "regression", 1, pair=True),
    Task("QA", "qa"),
    Task("embedding", "embedding"),
]}
_ALIASES = {"sst-2": "SST", "sst2": "SST", "squad": "QA", "sts": "STS-B", "stsb": "STS-B",
            "embed": "embedding"}


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    key = str(name)
    for k in TASKS:
        if k.lower() == key.lower():
            return TASKS[k]
    if key.lower() in _ALIASES:
        return TASKS[_ALIASES[key.lower()]]
    raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")


def accuracy(predictions, labels) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(f"accuracy needs equal, non-empty arrays, got {predictions.shape} "
                         f"and {labels.shape}")
    return float((predictions == labels).mean())


def best_spans(logits: np.ndarray, features, max_answer_length: int = 30) -> list[dict]:
    """Best answer span per question over its doc-stride windows.

    ``logits``: ``(rows, seq, 2)`` start/end logits; ``features``: :class:`bertg4.text.QAFeatures`.
    Spans must lie inside the context, end at or after their start, be at most
    ``max_answer_length`` tokens, and start in the window where that token has
    the most context. Returns, per question, its text, character span and score.
    """
    n_examples = int(features.example_index.max()) + 1 if len(features.example_index) else 0
    best = [None] * n_examples
    for r in range(logits.shape[0]):
        e = int(features.example_index[r])
        start, end = logits[r, :, 0], logits[r, :, 1]
        ok = features.offsets[r, :, 0] >= 0
        s_idx = np.where(ok & features.max_context[r])[0]
        e_idx = np.where(ok)[0]
        if not len(s_idx):
            continue
        # score[s, e] = start[s] + end[e] over allowed pairs
        score = start[s_idx][:, None] + end[e_idx][None, :]
        diff = e_idx[None, :] - s_idx[:, None]
        score = np.where((diff >= 0) & (diff < max_answer_length), score, -np.inf)
        i, j = np.unravel_index(np.argmax(score), score.shape)
        if not np.isfinite(score[i, j]):
            continue
        if best[e] is None or score[i, j] > best[e]["score"]:
            c0 = int(features.offsets[r, s_idx[i], 0])
            c1 = int(features.offsets[r, e_idx[j], 1])
            best[e] = {"text": features.contexts[e][c0:c1], "start_char": c0, "end_char": c1,
                       "score": float(score[i, j])}
    return [b or {"text": "", "start_char": -1, "end_char": -1, "score": float("-inf")} for b in best]
