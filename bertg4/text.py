"""WordPiece tokenization (the ``tokenizers`` library) and BERT featurizers.

A featurizer turns text into a :class:`Batch` -- ``input_ids``, ``token_types``
and ``valid_length`` per row, the three inputs of GluonNLP's BERT and of every
bertg4 engine. Rows are padded to ``seq_len`` (fixed shapes, as the original
``deploy.py`` does). Inputs longer than ``seq_len`` are truncated and *reported*:
``Batch.truncated`` marks the rows, and a :class:`TruncationWarning` says how many.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np


class TruncationWarning(UserWarning):
    """Some inputs were longer than the sequence length and were cut."""


class TextError(ValueError):
    """Input text that cannot be featurized (empty, not a string, unreadable file)."""


@dataclass
class Batch:
    input_ids: np.ndarray     # (batch, seq_len) int64
    token_types: np.ndarray   # (batch, seq_len) int64
    valid_length: np.ndarray  # (batch,) int64: tokens before the padding
    truncated: np.ndarray = None  # (batch,) bool: the row's text was cut to fit

    def __post_init__(self):
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64)
        self.token_types = np.asarray(self.token_types, dtype=np.int64)
        self.valid_length = np.asarray(self.valid_length, dtype=np.int64)
        if self.truncated is None:
            self.truncated = np.zeros(len(self.valid_length), dtype=bool)
        if self.input_ids.ndim != 2 or self.input_ids.shape != self.token_types.shape:
            raise ValueError(f"input_ids {self.input_ids.shape} and token_types "
                             f"{self.token_types.shape} must be equal (batch, seq_len) arrays")
        if self.valid_length.shape != (self.input_ids.shape[0],):
            raise ValueError(f"valid_length has shape {self.valid_length.shape}, expected "
                             f"({self.input_ids.shape[0]},)")
        if len(self.valid_length) and (self.valid_length.min() < 1
                                       or self.valid_length.max() > self.input_ids.shape[1]):
            raise ValueError(f"valid_length must lie in [1, {self.input_ids.shape[1]}], got "
                             f"{self.valid_length.min()}..{self.valid_length.max()}")

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def __getitem__(self, idx) -> "Batch":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Batch(self.input_ids[idx], self.token_types[idx], self.valid_length[idx],
                     self.truncated[idx])

    def batches(self, batch_size: int):
        """Consecutive sub-batches of at most ``batch_size`` rows."""
        check_batch_size(batch_size)
        for i in range(0, len(self), batch_size):
            yield self[i:i + batch_size]

    def repeat_to(self, n: int) -> "Batch":
        """``n`` rows, cycling through this batch (for timing a fixed batch size)."""
        idx = np.arange(n) % len(self)
        return self[idx]


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_texts(texts, what="text") -> list[str]:
    if isinstance(texts, str):
        raise TextError(f"expected a list of {what}s, got a single string")
    texts = list(texts)
    if not texts:
        raise TextError(f"no {what}s given")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TextError(f"{what} #{i} is {type(t).__name__}, not str")
        if not t.strip():
            raise TextError(f"{what} #{i} is empty")
    return texts


def _warn_truncated(truncated: np.ndarray, seq_len: int, what: str) -> None:
    n = int(truncated.sum())
    if n:
        warnings.warn(f"{n} of {len(truncated)} {what} longer than {seq_len} tokens "
                      f"were truncated to {seq_len}", TruncationWarning, stacklevel=3)


@dataclass
class QAFeatures:
    """SQuAD-style windows: one Batch row per (example, doc-stride window)."""
    batch: Batch
    example_index: np.ndarray      # (rows,) which question each row answers
    offsets: np.ndarray            # (rows, seq_len, 2) character span in the context, -1 elsewhere
    max_context: np.ndarray        # (rows, seq_len) bool: the window where this token has most context
    contexts: list[str] = field(default_factory=list)
    query_truncated: np.ndarray = None  # (examples,) bool


def concat_features(parts: list):
    """Batches (or QAFeatures) featurized apart, at the same sequence length, as one, rows in
    order: what one ``featurize`` call over all their texts gives."""
    if not parts:
        raise ValueError("no features to concatenate")
    if len({p.batch.seq_len if isinstance(p, QAFeatures) else p.seq_len for p in parts}) > 1:
        raise ValueError("features of different sequence lengths cannot share one batch")

    def batch(bs):
        return Batch(*(np.concatenate([getattr(b, k) for b in bs]) for k in
                       ("input_ids", "token_types", "valid_length", "truncated")))
    if not all(isinstance(p, QAFeatures) for p in parts):
        if any(isinstance(p, QAFeatures) for p in parts):
            raise ValueError("QA windows and plain batches cannot share one batch")
        return batch(parts)
    first = np.cumsum([0] + [len(p.contexts) for p in parts])  # each part's first example
    return QAFeatures(batch([p.batch for p in parts]),
                      np.concatenate([p.example_index + k for p, k in zip(parts, first)]),
                      np.concatenate([p.offsets for p in parts]), np.concatenate([p.max_context for p in parts]),
                      [c for p in parts for c in p.contexts],
                      np.concatenate([np.asarray(p.query_truncated, dtype=bool) for p in parts]))


class Tokenizer:
    """BERT's WordPiece tokenizer from a ``vocab.txt`` (or a token list), with featurizers."""

    def __init__(self, vocab: str | os.PathLike | list[str], lowercase: bool = True,
                 max_positions: int = 512):
        from tokenizers.implementations import BertWordPieceTokenizer
        if isinstance(vocab, (list, tuple)):
            vocab = {tok: i for i, tok in enumerate(vocab)}
        elif not os.path.isfile(vocab):
            raise TextError(f"vocabulary file {vocab} not found")
        self._tok = BertWordPieceTokenizer(vocab, lowercase=lowercase)
        self.max_positions = max_positions
        self.cls_id = self._id("[CLS]")
        self.sep_id = self._id("[SEP]")
        self.pad_id = self._id("[PAD]")

    def _id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise TextError(f"vocabulary has no {token} token")
        return i

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def check_seq_len(self, seq_len) -> int:
        if not isinstance(seq_len, (int, np.integer)) or isinstance(seq_len, bool) or seq_len < 3:
            raise ValueError(f"sequence length must be an integer >= 3, got {seq_len!r}")
        if seq_len > self.max_positions:
            raise ValueError(f"sequence length {seq_len} exceeds the model's "
                             f"{self.max_positions} position embeddings")
        return int(seq_len)

    def _pack(self, encodings, seq_len: int) -> Batch:
        n = len(encodings)
        ids = np.full((n, seq_len), self.pad_id, dtype=np.int64)
        types = np.zeros((n, seq_len), dtype=np.int64)
        valid = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=bool)
        for r, enc in enumerate(encodings):
            L = len(enc.ids)
            ids[r, :L] = enc.ids
            types[r, :L] = enc.type_ids
            valid[r] = L
            truncated[r] = bool(enc.overflowing)
        return Batch(ids, types, valid, truncated)

    def _encode(self, inputs, seq_len: int):
        self._tok.enable_truncation(max_length=seq_len, strategy="longest_first")
        try:
            return self._tok.encode_batch(inputs)
        finally:
            self._tok.no_truncation()

    def encode_sentences(self, texts, seq_len: int = 128) -> Batch:
        """``[CLS] text [SEP]`` per row."""
        seq_len = self.check_seq_len(seq_len)
        texts = _check_texts(texts, "sentence")
        batch = self._pack(self._encode(texts, seq_len), seq_len)
        _warn_truncated(batch.truncated, seq_len, "sentences")
        return batch

    def encode_pairs(self, first, second, seq_len: int = 128) -> Batch:
        """``[CLS] a [SEP] b [SEP]``, token type 1 for ``b``; longest-first truncation."""
        seq_len = self.check_seq_len(seq_len)
        first = _check_texts(first, "first sentence")
        second = _check_texts(second, "second sentence")
        if len(first) != len(second):
            raise TextError(f"{len(first)} first sentences but {len(second)} second sentences")
        batch = self._pack(self._encode(list(zip(first, second)), seq_len), seq_len)
        _warn_truncated(batch.truncated, seq_len, "sentence pairs")
        return batch

    def encode_squad(self, questions, contexts, seq_len: int = 384, max_query_length: int = 64,
                     doc_stride: int = 128) -> QAFeatures:
        """SQuAD features as in BERT's ``run_squad``/GluonNLP's ``finetune_squad.py``.

        ``[CLS] question [SEP] context-window [SEP]``; questions longer than
        ``max_query_length`` tokens are cut (reported); contexts that do not fit are
        split into windows whose starts are ``doc_stride`` tokens apart.
        """
        seq_len = self.check_seq_len(seq_len)
        questions = _check_texts(questions, "question")
        contexts = _check_texts(contexts, "context")
        if len(questions) != len(contexts):
            raise TextError(f"{len(questions)} questions but {len(contexts)} contexts")
        if max_query_length < 1 or max_query_length > seq_len - 4:
            raise ValueError(f"max_query_length {max_query_length} must lie in [1, {seq_len - 4}]")
        if doc_stride < 1:
            raise ValueError(f"doc_stride must be positive, got {doc_stride}")
        q_enc = self._tok.encode_batch(questions, add_special_tokens=False)
        c_enc = self._tok.encode_batch(contexts, add_special_tokens=False)
        rows, ex_idx, offs, maxctx = [], [], [], []
        q_trunc = np.zeros(len(questions), dtype=bool)
        for e, (q, c) in enumerate(zip(q_enc, c_enc)):
            q_ids = q.ids
            if len(q_ids) > max_query_length:
                q_ids, q_trunc[e] = q_ids[:max_query_length], True
            room = seq_len - len(q_ids) - 3
            starts, start = [], 0
            while True:
                starts.append(start)
                if start + room >= len(c.ids):
                    break
                start += min(room, doc_stride)
            # each context token's best window: most context on its shorter side, as in
            # BERT's run_squad (_check_is_max_context); ties go to the earlier window
            best_win = np.zeros(len(c.ids), dtype=np.int64)
            best_score = np.full(len(c.ids), -np.inf)
            for w, s in enumerate(starts):
                length = min(room, len(c.ids) - s)
                t = np.arange(s, s + length)
                score = np.minimum(t - s, s + length - 1 - t) + 0.01 * length
                better = score > best_score[t]
                best_win[t[better]], best_score[t[better]] = w, score[better]
            for w, s in enumerate(starts):
                win = range(s, min(s + room, len(c.ids)))
                ids = [self.cls_id] + q_ids + [self.sep_id] + [c.ids[t] for t in win] + [self.sep_id]
                types = [0] * (len(q_ids) + 2) + [1] * (len(win) + 1)
                off = np.full((seq_len, 2), -1, dtype=np.int64)
                mc = np.zeros(seq_len, dtype=bool)
                base = len(q_ids) + 2
                for j, t in enumerate(win):
                    off[base + j] = c.offsets[t]
                    mc[base + j] = best_win[t] == w
                rows.append((ids, types))
                ex_idx.append(e)
                offs.append(off)
                maxctx.append(mc)
        n = len(rows)
        input_ids = np.full((n, seq_len), self.pad_id, dtype=np.int64)
        token_types = np.zeros((n, seq_len), dtype=np.int64)
        valid = np.zeros(n, dtype=np.int64)
        for r, (ids, types) in enumerate(rows):
            input_ids[r, :len(ids)] = ids
            token_types[r, :len(ids)] = types
            valid[r] = len(ids)
        if q_trunc.any():
            warnings.warn(f"{int(q_trunc.sum())} of {len(questions)} questions longer than "
                          f"{max_query_length} tokens were truncated", TruncationWarning, stacklevel=2)
        truncated = q_trunc[np.asarray(ex_idx)]
        return QAFeatures(Batch(input_ids, token_types, valid, truncated), np.asarray(ex_idx),
                          np.stack(offs), np.stack(maxctx), list(contexts), q_trunc)
