"""Tasks: what a model's output means, how it is post-processed and scored."""
from __future__ import annotations

import os
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
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


def _positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_qa_inputs(logits, features) -> np.ndarray:
    logits = np.asarray(logits)
    offsets, max_context = np.asarray(features.offsets), np.asarray(features.max_context)
    rows = len(features.example_index)
    if offsets.ndim != 3 or offsets.shape[0] != rows or max_context.shape != offsets.shape[:2]:
        raise ValueError(f"features are inconsistent: {rows} rows, offsets {offsets.shape}, "
                         f"max_context {max_context.shape}")
    if logits.ndim != 3 or logits.shape[2] != 2:
        raise ValueError(f"QA logits must have shape (rows, seq, 2) with start and end logits, "
                         f"got {logits.shape}")
    if logits.shape[:2] != offsets.shape[:2]:
        raise ValueError(f"QA logits shape {logits.shape} does not match the features: expected "
                         f"({offsets.shape[0]}, {offsets.shape[1]}, 2)")
    return logits.astype(np.float64, copy=False)


def _span_candidates(logits: np.ndarray, features, max_answer_length: int):
    """Every allowed span per question: ``(scores, rows, starts, ends)`` arrays, row-major order."""
    offsets, max_context = np.asarray(features.offsets), np.asarray(features.max_context)
    example_index = np.asarray(features.example_index)
    n_examples = len(features.contexts) or (int(example_index.max()) + 1 if len(example_index) else 0)
    if len(example_index) and (example_index.min() < 0 or example_index.max() >= n_examples):
        raise ValueError(f"example_index must lie in [0, {n_examples}), got "
                         f"{example_index.min()}..{example_index.max()}")
    seq = offsets.shape[1]
    lengths = np.arange(min(max_answer_length, seq))
    parts = [[] for _ in range(n_examples)]
    for r in range(logits.shape[0]):
        in_context = offsets[r, :, 0] >= 0
        if np.isnan(logits[r][in_context]).any():
            raise ValueError(f"QA logits of row {r} contain NaN inside the context")
        starts = np.flatnonzero(in_context & max_context[r])
        if not starts.size:
            continue
        ends = starts[:, None] + lengths[None, :]
        inside = ends < seq
        ends = np.minimum(ends, seq - 1)
        with np.errstate(invalid="ignore"):
            score = logits[r, starts, 0][:, None] + logits[r, ends, 1]
        allowed = inside & in_context[ends] & np.isfinite(score)
        i, k = np.nonzero(allowed)
        if i.size:
            parts[int(example_index[r])].append(
                (score[i, k], np.full(i.size, r), starts[i], ends[i, k]))
    return [tuple(np.concatenate(a) for a in zip(*p)) if p else None for p in parts]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def nbest_spans(logits: np.ndarray, features, n_best: int = 20,
                max_answer_length: int = 30) -> list[list[dict]]:
    """The ``n_best`` highest-scoring answer spans per question, over its doc-stride windows.

    ``logits``: ``(rows, seq, 2)`` start/end logits; ``features``: :class:`bertg4.text.QAFeatures`.
    A span's score is its start logit plus its end logit. Spans lie inside the
    context, end at or after their start, are at most ``max_answer_length`` tokens
    and start in the window where that token has the most context. As in BERT's
    ``run_squad`` and GluonNLP's ``finetune_squad.py``, a text is kept once (its
    best-scoring span) and ``probability`` is the softmax of the returned scores.
    Each candidate has ``text``, ``start_char``, ``end_char`` (into the context),
    ``score``, ``start_logit``, ``end_logit`` and ``probability``; candidates are
    sorted by decreasing score (ties: earlier window, then earlier span). A question
    without any allowed span gets an empty list.
    """
    n_best = _positive_int(n_best, "n_best")
    max_answer_length = _positive_int(max_answer_length, "max_answer_length")
    logits = _check_qa_inputs(logits, features)
    offsets = np.asarray(features.offsets)
    results = []
    for e, cand in enumerate(_span_candidates(logits, features, max_answer_length)):
        if cand is None:
            results.append([])
            continue
        scores, rows, starts, ends = cand
        chosen, seen, k = [], set(), min(len(scores), 4 * n_best)
        while True:
            if k < len(scores):
                threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
                top = np.flatnonzero(scores >= threshold)
            else:
                top = np.arange(len(scores))
            order = top[np.argsort(-scores[top], kind="stable")]
            chosen, seen = [], set()
            for c in order:
                c0 = int(offsets[rows[c], starts[c], 0])
                c1 = int(offsets[rows[c], ends[c], 1])
                text = features.contexts[e][c0:c1]
                if text in seen:
                    continue
                seen.add(text)
                chosen.append({"text": text, "start_char": c0, "end_char": c1,
                               "score": float(scores[c]),
                               "start_logit": float(logits[rows[c], starts[c], 0]),
                               "end_logit": float(logits[rows[c], ends[c], 1])})
                if len(chosen) == n_best:
                    break
            if len(chosen) == n_best or len(top) == len(scores):
                break
            k = min(len(scores), 4 * k)
        probs = _softmax(np.array([c["score"] for c in chosen]))
        for c, p in zip(chosen, probs):
            c["probability"] = float(p)
        results.append(chosen)
    return results


def best_spans(logits: np.ndarray, features, max_answer_length: int = 30) -> list[dict]:
    """Best answer span per question over its doc-stride windows (top-1 of :func:`nbest_spans`).

    Returns, per question, its ``text``, ``start_char``, ``end_char`` and ``score``;
    a question without any allowed span gets ``""``, ``-1``, ``-1`` and ``-inf``.
    """
    out = []
    for nbest in nbest_spans(logits, features, n_best=1, max_answer_length=max_answer_length):
        if nbest:
            out.append({k: nbest[0][k] for k in ("text", "start_char", "end_char", "score")})
        else:
            out.append({"text": "", "start_char": -1, "end_char": -1, "score": float("-inf")})
    return out


# SQuAD v1.1 evaluation (the official ``evaluate-v1.1.py`` definitions)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the words a/an/the, collapse whitespace."""
    if not isinstance(s, str):
        raise TypeError(f"answer must be a string, got {type(s).__name__}")
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _ground_truths(ground_truths) -> list[str]:
    if isinstance(ground_truths, str):
        return [ground_truths]
    ground_truths = list(ground_truths)
    if not ground_truths:
        raise ValueError("no ground-truth answers to compare with: SQuAD v1.1 scores need at "
                         "least one answer per question")
    return ground_truths


def _f1(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, ground_truths: str | Iterable[str]) -> float:
    """1.0 if the normalized prediction equals any normalized ground truth, else 0.0."""
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in _ground_truths(ground_truths)))


def f1_score(prediction: str, ground_truths: str | Iterable[str]) -> float:
    """Token F1 (multiset overlap of normalized tokens), the best over the ground truths.

    As in SQuAD v1.1, a prediction with no token in common with an answer scores 0,
    also when both normalize to nothing.
    """
    return max(_f1(prediction, g) for g in _ground_truths(ground_truths))


def _squad_questions(dataset) -> tuple[list[str], list[list[str]]]:
    if isinstance(dataset, (str, os.PathLike)):
        from .data import read_squad
        dataset = read_squad(os.fspath(dataset))
    if hasattr(dataset, "ids") and hasattr(dataset, "answers"):
        ids, answers = list(dataset.ids), [list(a) for a in dataset.answers]
        if len(ids) != len(answers):
            raise ValueError(f"dataset has {len(ids)} ids but {len(answers)} answer lists")
        return ids, answers
    if isinstance(dataset, Mapping) and "data" in dataset:
        dataset = dataset["data"]
    if not isinstance(dataset, list):
        raise TypeError("dataset must be a QASet, a SQuAD JSON path, or SQuAD JSON data, got "
                        f"{type(dataset).__name__}")
    ids, answers = [], []
    try:
        for article in dataset:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    ids.append(qa["id"])
                    answers.append([a["text"] for a in qa["answers"]])
    except (KeyError, TypeError) as e:
        raise ValueError(f"dataset is not in SQuAD format (missing {e})") from None
    return ids, answers


def _prediction_text(value, qid) -> str:
    if isinstance(value, Mapping) and "text" in value:
        value = value["text"]
    if not isinstance(value, str):
        raise TypeError(f"prediction for question {qid!r} must be a string or a dict with "
                        f"'text', got {type(value).__name__}")
    return value


def squad_scores(predictions: Mapping | list, dataset) -> dict:
    """SQuAD v1.1 exact match and F1 in percent over all questions of ``dataset``.

    ``predictions``: ``{question id: answer text}`` (ids not in the dataset are
    ignored) or a list in the dataset's order; an answer may also be a dict with
    ``text``, such as :func:`best_spans` returns. ``dataset``: a
    :class:`bertg4.data.QASet`, a SQuAD JSON path, or the parsed JSON (or its
    ``data`` list). Returns ``{"exact_match": %, "f1": %, "count": questions}``.
    """
    ids, answers = _squad_questions(dataset)
    if not ids:
        raise ValueError("dataset has no questions")
    if isinstance(predictions, Mapping):
        missing = [q for q in ids if q not in predictions]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise ValueError(f"predictions lack {len(missing)} of {len(ids)} questions: {shown}")
        texts = [_prediction_text(predictions[q], q) for q in ids]
    else:
        predictions = list(predictions)
        if len(predictions) != len(ids):
            raise ValueError(f"{len(predictions)} predictions for {len(ids)} questions: a list "
                             "must follow the dataset's order, one answer per question")
        texts = [_prediction_text(p, q) for p, q in zip(predictions, ids)]
    em = f1 = 0.0
    for qid, text, golds in zip(ids, texts, answers):
        if not golds:
            raise ValueError(f"question {qid!r} has no ground-truth answers")
        em += exact_match(text, golds)
        f1 += f1_score(text, golds)
    return {"exact_match": 100.0 * em / len(ids), "f1": 100.0 * f1 / len(ids), "count": len(ids)}
