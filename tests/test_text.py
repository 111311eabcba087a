import os

import numpy as np
import pytest

from bertg4 import data as D
from bertg4.checkpoint import embedded_dir
from bertg4.tasks import best_spans
from bertg4.text import Batch, TextError, Tokenizer, TruncationWarning


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(os.path.join(embedded_dir(), "vocab.txt"))


@pytest.fixture(scope="module")
def hf_tok():
    transformers = pytest.importorskip("transformers", reason="transformers is the reference tokenizer")
    return transformers.BertTokenizerFast.from_pretrained(embedded_dir())


def test_sentences_match_transformers_tokenizer(tok, hf_tok, sst2_dev):
    sents = sst2_dev.first
    batch = tok.encode_sentences(sents, seq_len=64)
    ref = hf_tok(sents, max_length=64, truncation=True, padding="max_length")
    np.testing.assert_array_equal(batch.input_ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(batch.token_types, np.array(ref["token_type_ids"]))
    np.testing.assert_array_equal(batch.valid_length, np.array(ref["attention_mask"]).sum(1))


def test_pairs_match_transformers_tokenizer(tok, hf_tok, sst2_dev):
    a, b = sst2_dev.first[:200], sst2_dev.first[200:400]
    with pytest.warns(TruncationWarning):
        batch = tok.encode_pairs(a, b, seq_len=40)
    ref = hf_tok(a, b, max_length=40, truncation="longest_first", padding="max_length")
    np.testing.assert_array_equal(batch.input_ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(batch.token_types, np.array(ref["token_type_ids"]))
    full = hf_tok(a, b)["input_ids"]
    np.testing.assert_array_equal(batch.truncated, np.array([len(x) > 40 for x in full]))


def test_truncation_is_reported(tok):
    long = "word " * 300
    with pytest.warns(TruncationWarning, match="1 of 2 sentences longer than 128 tokens"):
        batch = tok.encode_sentences(["short one", long], seq_len=128)
    assert batch.truncated.tolist() == [False, True]
    assert batch.valid_length.tolist() == [4, 128]
    assert batch.input_ids[1, 127] == tok.sep_id


@pytest.mark.parametrize("texts, message", [
    (["fine", ""], "#1 is empty"),
    (["   "], "#0 is empty"),
    ([], "no sentences"),
    ("a string", "single string"),
    ([b"bytes"], "bytes, not str"),
])
def test_bad_text(tok, texts, message):
    with pytest.raises(TextError, match=message):
        tok.encode_sentences(texts)


def test_seq_len_limits(tok):
    with pytest.raises(ValueError, match="exceeds the model's 512 position embeddings"):
        tok.encode_sentences(["hi"], seq_len=513)
    with pytest.raises(ValueError, match=">= 3"):
        tok.encode_sentences(["hi"], seq_len=2)


def test_batch_validation():
    with pytest.raises(ValueError, match="valid_length must lie"):
        Batch(np.zeros((2, 4)), np.zeros((2, 4)), [0, 4])
    with pytest.raises(ValueError, match="valid_length has shape"):
        Batch(np.zeros((2, 4)), np.zeros((2, 4)), [1, 2, 3])
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        list(Batch(np.zeros((2, 4)), np.zeros((2, 4)), [1, 2]).batches(0))


def test_non_utf8_file(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_bytes("sentence\tlabel\ncaf\xe9 ok\t1\n".encode("latin-1"))
    with pytest.raises(TextError, match=r"not UTF-8 text \(byte 0xe9 .* line 2\)"):
        D.read_tsv(str(p))


def test_tsv_shape_errors(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("sentence\tlabel\nfine\t1\nbroken row\n")
    with pytest.raises(TextError, match="x.tsv:3: 1 fields"):
        D.read_tsv(str(p))
    p.write_text("words\tlabel\nfine\t1\n")
    with pytest.raises(TextError, match="no sentence/sentence1/question column"):
        D.read_tsv(str(p))


def test_squad_windows_cover_context_and_recover_answers(tok):
    qa = D.sample_qa()
    # a small seq_len forces several doc-stride windows per paragraph
    feats = tok.encode_squad(qa.questions, qa.contexts, seq_len=40, max_query_length=12, doc_stride=10)
    assert len(feats.batch) > len(qa)
    for e in range(len(qa)):
        rows = np.where(feats.example_index == e)[0]
        assert len(rows) >= 2
        n_ctx_tokens = len(tok.tokenize(qa.contexts[e]))
        starts = set()
        for r in rows:
            ok = feats.offsets[r, :, 0] >= 0
            starts |= set(map(tuple, feats.offsets[r][ok]))
            # type ids: 0 for [CLS] question [SEP], 1 for the window and its [SEP]
            L = feats.batch.valid_length[r]
            first_ctx = np.argmax(ok)
            assert (feats.batch.token_types[r, :first_ctx] == 0).all()
            assert (feats.batch.token_types[r, first_ctx:L] == 1).all()
        assert len(starts) == n_ctx_tokens  # every context token appears in some window
        # each context token is the "max context" position in exactly one window
        counts = {}
        for r in rows:
            for pos in np.where(feats.max_context[r])[0]:
                key = tuple(feats.offsets[r, pos])
                counts[key] = counts.get(key, 0) + 1
        assert set(counts.values()) == {1} and len(counts) == n_ctx_tokens
        # the gold answer's characters are reachable through the offsets
        answer = qa.answers[e][0]
        start = qa.contexts[e].find(answer)
        spans = [tuple(o) for r in rows for o in feats.offsets[r] if o[0] >= 0]
        assert any(s == start for s, _ in spans)
        assert any(t == start + len(answer) for _, t in spans)


def test_best_spans_pick_the_peaked_answer(tok):
    qa = D.sample_qa()
    feats = tok.encode_squad(qa.questions, qa.contexts, seq_len=48, max_query_length=16, doc_stride=12)
    logits = np.zeros((len(feats.batch), 48, 2), dtype=np.float32)
    for r in range(len(feats.batch)):
        e = feats.example_index[r]
        answer = qa.answers[e][0]
        c0 = qa.contexts[e].find(answer)
        c1 = c0 + len(answer)
        for pos in range(48):
            s, t = feats.offsets[r, pos]
            if s == c0:
                logits[r, pos, 0] = 10.0
            if t == c1:
                logits[r, pos, 1] = 10.0
    answers = best_spans(logits, feats)
    assert [a["text"] for a in answers] == [a[0] for a in qa.answers]


def test_question_truncation_reported(tok):
    with pytest.warns(TruncationWarning, match="1 of 1 questions"):
        feats = tok.encode_squad(["what " * 80], ["a short context ."], seq_len=64, max_query_length=8)
    assert feats.query_truncated.tolist() == [True]
