import json
import os

import numpy as np
import pytest

from bertg4 import data as D
from bertg4.checkpoint import embedded_dir
from bertg4.tasks import (best_spans, exact_match, f1_score, nbest_spans, normalize_answer,
                          squad_scores)
from bertg4.text import Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(os.path.join(embedded_dir(), "vocab.txt"))


# --- SQuAD v1.1 normalization and scores -------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("theater", "theater"),                      # articles only as whole words
    ("an answer", "answer"),
    ("  A  cat,\tan\napple  ", "cat apple"),
    ("The theater of the Absurd.", "theater of absurd"),
    ("Anne's", "annes"),
    ("the-end", "theend"),                       # punctuation goes before articles
    ("A", ""),
    ("\u201cquoted\u201d", "\u201cquoted\u201d"),  # only string.punctuation is removed
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("the Eiffel Tower", ["Eiffel Tower!"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("1990", ["in 1990", "1990"]) == 1.0
    assert exact_match("1990", "in 1990") == 0.0


def test_f1_score():
    assert f1_score("Paris France", ["Paris"]) == pytest.approx(2 * (1 / 2 * 1) / (1 / 2 + 1))
    assert f1_score("Paris France", ["Paris"]) == pytest.approx(2 / 3)
    assert f1_score("London", ["Paris"]) == 0.0
    assert f1_score("", ["Paris"]) == 0.0
    assert f1_score("the Eiffel Tower", ["Eiffel Tower!"]) == 1.0
    # multiset overlap: one "cat" and one "dog" in common
    assert f1_score("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)
    # the best over several ground truths
    assert f1_score("Paris France", ["London", "Paris"]) == pytest.approx(2 / 3)
    assert f1_score("Paris France", ["London", "Paris", "paris, France"]) == 1.0


def test_answers_that_normalize_to_nothing():
    # SQuAD v1.1: equal normalized strings match exactly, but share no token for F1
    assert exact_match("the", ["a"]) == 1.0
    assert f1_score("the", ["a"]) == 0.0


def test_empty_ground_truths_are_an_error():
    with pytest.raises(ValueError, match="no ground-truth answers"):
        exact_match("Paris", [])
    with pytest.raises(ValueError, match="no ground-truth answers"):
        f1_score("Paris", [])
    with pytest.raises(TypeError, match="answer must be a string"):
        f1_score(None, ["Paris"])


SAMPLE_PREDICTIONS = {
    "g4-1": "the NVIDIA T4",                 # exact after normalization
    "g4-2": "2019",                          # wrong: gold "320"
    "g4-3": "2019",                          # exact
    "bert-1": "12 layers",                   # F1 2/3 against "12"
    "bert-2": "Researchers at Google.",      # exact after normalization
    "bert-3": "English Wikipedia",           # F1 2/3 against "english wikipedia and bookscorpus"
}


def test_squad_scores_percent_scale():
    qa = D.sample_qa()
    scores = squad_scores(SAMPLE_PREDICTIONS, qa)
    assert scores["count"] == 6
    assert scores["exact_match"] == pytest.approx(100 * 3 / 6)
    assert scores["f1"] == pytest.approx(100 * (3 + 2 / 3 + 2 / 3 + 0) / 6)
    # a list in the dataset's order, answer dicts, the JSON file and its parsed data agree
    as_list = [SAMPLE_PREDICTIONS[q] for q in qa.ids]
    assert squad_scores(as_list, qa) == scores
    assert squad_scores([{"text": t} for t in as_list], qa) == scores
    path = os.path.join(D.SAMPLES, "qa_sample.json")
    assert squad_scores(SAMPLE_PREDICTIONS, path) == scores
    with open(path) as f:
        assert squad_scores(SAMPLE_PREDICTIONS, json.load(f)) == scores
    perfect = {q: a[0] for q, a in zip(qa.ids, qa.answers)}
    assert squad_scores(perfect, qa) == {"exact_match": 100.0, "f1": 100.0, "count": 6}


def test_squad_scores_errors():
    qa = D.sample_qa()
    partial = {q: t for q, t in SAMPLE_PREDICTIONS.items() if q not in ("g4-2", "bert-3")}
    with pytest.raises(ValueError, match="lack 2 of 6 questions: g4-2, bert-3"):
        squad_scores(partial, qa)
    with pytest.raises(ValueError, match="5 predictions for 6 questions"):
        squad_scores(list(SAMPLE_PREDICTIONS.values())[:5], qa)
    no_answers = D.QASet(["q"], ["why?"], ["because."], [[]], "test")
    with pytest.raises(ValueError, match="question 'q' has no ground-truth answers"):
        squad_scores({"q": "because"}, no_answers)


# --- n-best span decoding ----------------------------------------------------------------

def _token_at(feats, row, char, side):
    """Position in ``row`` of the context token starting (side 0) or ending (side 1) at ``char``."""
    pos = np.flatnonzero(feats.offsets[row, :, side] == char)
    assert len(pos) == 1, f"no single token with offset {side}={char} in row {row}"
    return int(pos[0])


def _n_tokens(feats, row, c0, c1):
    off = feats.offsets[row]
    return int(((off[:, 0] >= c0) & (off[:, 1] <= c1) & (off[:, 0] >= 0)).sum())


@pytest.fixture(scope="module")
def g4(tok):
    """The first sample question, one window, logits peaked on known tokens."""
    qa = D.sample_qa()
    feats = tok.encode_squad(qa.questions[:1], qa.contexts[:1], seq_len=96)
    assert len(feats.batch) == 1
    ctx = qa.contexts[0]
    logits = np.full((1, 96, 2), -10.0, dtype=np.float32)
    in_context = feats.offsets[0, :, 0] >= 0
    logits[0, ~in_context] = 50.0              # [CLS], question, [SEP] and padding never answer
    spans = {w: (ctx.find(w), ctx.find(w) + len(w)) for w in ("one", "NVIDIA", "T4 GPU")}
    logits[0, _token_at(feats, 0, spans["NVIDIA"][0], 0), 0] = 5.0
    logits[0, _token_at(feats, 0, spans["one"][0], 0), 0] = 3.5
    logits[0, _token_at(feats, 0, spans["T4 GPU"][0] + 2, 1), 1] = 4.0
    logits[0, _token_at(feats, 0, spans["T4 GPU"][1], 1), 1] = 2.0
    return feats, logits, ctx


def test_nbest_order_text_and_chars(g4):
    feats, logits, ctx = g4
    (nbest,) = nbest_spans(logits, feats, n_best=4)
    expected = [("NVIDIA T4", 9.0), ("one NVIDIA T4", 7.5), ("NVIDIA T4 GPU", 7.0),
                ("one NVIDIA T4 GPU", 5.5)]
    assert [(c["text"], c["score"]) for c in nbest] == expected
    for c in nbest:
        assert ctx[c["start_char"]:c["end_char"]] == c["text"]
        assert c["start_char"] == ctx.find(c["text"])
        assert c["score"] == c["start_logit"] + c["end_logit"]
    probs = np.array([c["probability"] for c in nbest])
    scores = np.array([s for _, s in expected])
    np.testing.assert_allclose(probs, np.exp(scores) / np.exp(scores).sum(), rtol=1e-12)
    assert probs.sum() == pytest.approx(1.0)
    # best_spans is the top candidate, in its own format
    assert best_spans(logits, feats) == [{"text": "NVIDIA T4", "start_char": 77, "end_char": 86,
                                          "score": 9.0}]


def test_nbest_respects_max_answer_length(g4):
    feats, logits, _ = g4
    assert _n_tokens(feats, 0, 77, 86) == 5   # n ##vid ##ia t ##4
    (nbest,) = nbest_spans(logits, feats, n_best=20, max_answer_length=5)
    texts = [c["text"] for c in nbest]
    assert texts[0] == "NVIDIA T4" and "one NVIDIA T4" not in texts and "NVIDIA T4 GPU" not in texts
    assert all(_n_tokens(feats, 0, c["start_char"], c["end_char"]) <= 5 for c in nbest)
    (nbest,) = nbest_spans(logits, feats, n_best=20, max_answer_length=4)
    assert "NVIDIA T4" not in [c["text"] for c in nbest]
    assert all(_n_tokens(feats, 0, c["start_char"], c["end_char"]) <= 4 for c in nbest)
    (nbest,) = nbest_spans(logits, feats, n_best=20, max_answer_length=1)
    assert all(_n_tokens(feats, 0, c["start_char"], c["end_char"]) == 1 for c in nbest)


def test_end_before_start_is_never_chosen(g4):
    feats, _, ctx = g4
    logits = np.zeros((1, 96, 2), dtype=np.float32)
    logits[0, _token_at(feats, 0, ctx.find("Tensor"), 0), 0] = 10.0
    logits[0, _token_at(feats, 0, ctx.find("2019") + 4, 1), 1] = 10.0   # ends before "Tensor"
    (nbest,) = nbest_spans(logits, feats, n_best=50)
    assert max(c["score"] for c in nbest) == 10.0
    assert all(c["start_char"] < c["end_char"] for c in nbest)


def test_nbest_lists_every_span_of_a_short_context(tok):
    feats = tok.encode_squad(["Where?"], ["Paris is big."], seq_len=16, max_query_length=8)
    assert _n_tokens(feats, 0, 0, 13) == 4     # paris is big .
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 16, 2))
    (nbest,) = nbest_spans(logits, feats, n_best=100)
    assert len(nbest) == 4 * 5 // 2
    assert [c["score"] for c in nbest] == sorted((c["score"] for c in nbest), reverse=True)
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)


def _brute_force(logits, feats, n_best, max_answer_length):
    out = []
    for e, ctx in enumerate(feats.contexts):
        cands = []
        for r in np.flatnonzero(feats.example_index == e):
            for s in range(logits.shape[1]):
                if feats.offsets[r, s, 0] < 0 or not feats.max_context[r, s]:
                    continue
                for t in range(s, min(s + max_answer_length, logits.shape[1])):
                    if feats.offsets[r, t, 0] >= 0:
                        c0, c1 = int(feats.offsets[r, s, 0]), int(feats.offsets[r, t, 1])
                        cands.append((float(logits[r, s, 0]) + float(logits[r, t, 1]), ctx[c0:c1], c0, c1))
        best = {}
        for score, text, c0, c1 in cands:
            if text not in best or score > best[text][0]:
                best[text] = (score, text, c0, c1)
        out.append(sorted(best.values(), reverse=True)[:n_best])
    return out


def test_nbest_matches_brute_force_over_windows(tok):
    qa = D.sample_qa()
    with pytest.warns(UserWarning):
        feats = tok.encode_squad(qa.questions, qa.contexts, seq_len=40, max_query_length=12, doc_stride=10)
    assert len(feats.batch) > 2 * len(qa)
    logits = np.random.default_rng(0).normal(size=(len(feats.batch), 40, 2)).astype(np.float32)
    got = nbest_spans(logits, feats, n_best=20, max_answer_length=8)
    want = _brute_force(logits, feats, 20, 8)
    for g, w in zip(got, want):
        assert len(g) == 20
        assert [(c["text"], c["start_char"], c["end_char"]) for c in g] == [x[1:] for x in w]
        np.testing.assert_allclose([c["score"] for c in g], [x[0] for x in w], rtol=1e-12)
        assert sum(c["probability"] for c in g) == pytest.approx(1.0)
        assert all(a["probability"] >= b["probability"] for a, b in zip(g, g[1:]))
    assert [b["text"] for b in best_spans(logits, feats, 8)] == [w[0][1] for w in want]


def test_doc_stride_answer_in_a_later_window(tok):
    filler = lambda r: " ".join(f"Filler sentence number {i} says nothing at all." for i in r)
    ctx = filler(range(7)) + " The secret code of the vault is 4711, said the guard. " + filler(range(7, 11))
    feats = tok.encode_squad(["What is the secret code of the vault?"], [ctx], seq_len=48,
                             max_query_length=16, doc_stride=16)
    rows = len(feats.batch)
    assert rows >= 4
    c0, c1 = ctx.find("4711"), ctx.find("4711") + 4
    holders = [r for r in range(rows) if (feats.offsets[r, :, 0] == c0).any()]
    home = [r for r in holders if feats.max_context[r, _token_at(feats, r, c0, 0)]]
    assert len(holders) >= 2 and len(home) == 1 and home[0] > 0
    logits = np.full((rows, 48, 2), -10.0, dtype=np.float32)
    for r in holders:
        # outside its max-context window the answer's start logit is higher, and must not count
        logits[r, _token_at(feats, r, c0, 0), 0] = 8.0 if r == home[0] else 30.0
        logits[r, _token_at(feats, r, c1, 1), 1] = 8.0
    # a decoy in the first window, on a token whose max context is elsewhere
    decoy = int(np.flatnonzero((feats.offsets[0, :, 0] >= 0) & ~feats.max_context[0])[0])
    logits[0, decoy] = 20.0
    (nbest,) = nbest_spans(logits, feats, n_best=5)
    assert (nbest[0]["text"], nbest[0]["start_char"], nbest[0]["end_char"]) == ("4711", c0, c1)
    assert nbest[0]["score"] == 16.0 and max(c["score"] for c in nbest) == 16.0
    assert len({c["text"] for c in nbest}) == len(nbest)
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)
    assert best_spans(logits, feats)[0]["text"] == "4711"


def test_no_allowed_span(g4):
    feats, logits, _ = g4
    blocked = np.array(logits)
    blocked[..., 0] = -np.inf
    assert nbest_spans(blocked, feats) == [[]]
    assert best_spans(blocked, feats) == [{"text": "", "start_char": -1, "end_char": -1,
                                           "score": float("-inf")}]


@pytest.mark.parametrize("kwargs, message", [
    ({"n_best": 0}, "n_best must be a positive integer, got 0"),
    ({"n_best": 2.5}, "n_best must be a positive integer"),
    ({"n_best": True}, "n_best must be a positive integer"),
    ({"max_answer_length": 0}, "max_answer_length must be a positive integer, got 0"),
])
def test_bad_arguments(g4, kwargs, message):
    feats, logits, _ = g4
    with pytest.raises(ValueError, match=message):
        nbest_spans(logits, feats, **kwargs)


def test_bad_logits(g4):
    feats, logits, _ = g4
    with pytest.raises(ValueError, match=r"does not match the features: expected \(1, 96, 2\)"):
        nbest_spans(logits[:, :64], feats)
    with pytest.raises(ValueError, match="does not match the features"):
        nbest_spans(np.concatenate([logits, logits]), feats)
    with pytest.raises(ValueError, match=r"shape \(rows, seq, 2\)"):
        nbest_spans(logits[..., :1], feats)
    with pytest.raises(ValueError, match=r"shape \(rows, seq, 2\)"):
        best_spans(logits[0], feats)
    nan = np.array(logits)
    nan[0, feats.offsets[0, :, 0] >= 0, 1] = np.nan
    with pytest.raises(ValueError, match="row 0 contain NaN"):
        nbest_spans(nan, feats)


def test_repeated_text_is_kept_once_with_its_best_score(tok):
    feats = tok.encode_squad(["Which?"], [" ".join(["go"] * 10)], seq_len=24, max_query_length=8)
    logits = np.random.default_rng(2).normal(size=(1, 24, 2))
    (nbest,) = nbest_spans(logits, feats, n_best=10, max_answer_length=10)
    assert sorted(c["text"] for c in nbest) == sorted(" ".join(["go"] * n) for n in range(1, 11))
    want = _brute_force(logits, feats, 10, 10)[0]
    assert [(c["score"], c["text"], c["start_char"], c["end_char"]) for c in nbest] == want


def test_features_made_apart_concatenate_to_one_featurize(tok):
    import warnings
    from bertg4.text import concat_features
    qa = D.sample_qa()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(seq_len=40, max_query_length=12, doc_stride=10)
        whole = tok.encode_squad(qa.questions, qa.contexts, **kw)
        parts = [tok.encode_squad(qa.questions[i:i + 1], qa.contexts[i:i + 1], **kw) for i in range(len(qa))]
        joined = concat_features(parts)
        assert len({len(p.batch) for p in parts}) > 1  # examples with different window counts
        for k in ("input_ids", "token_types", "valid_length", "truncated"):
            np.testing.assert_array_equal(getattr(joined.batch, k), getattr(whole.batch, k))
        for k in ("example_index", "offsets", "max_context", "query_truncated"):
            np.testing.assert_array_equal(getattr(joined, k), getattr(whole, k))
        assert joined.contexts == whole.contexts
        texts = ["a fine film", "bad", "x " * 40]
        one = tok.encode_sentences(texts, seq_len=16)
        apart = concat_features([tok.encode_sentences(texts[:2], seq_len=16), tok.encode_sentences(texts[2:], seq_len=16)])
        for k in ("input_ids", "token_types", "valid_length", "truncated"):
            np.testing.assert_array_equal(getattr(apart, k), getattr(one, k))
        assert apart.truncated.tolist() == [False, False, True]
        with pytest.raises(ValueError, match="different sequence lengths"):
            concat_features([one, tok.encode_sentences(texts, seq_len=8)])
        with pytest.raises(ValueError, match="cannot share"):
            concat_features([one, whole])
