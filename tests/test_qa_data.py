"""SQuAD data: the project's small set is valid SQuAD v1.1, and download_squad refuses a file
whose size or SHA-256 differs from the published one, or that cannot be fetched."""
import hashlib
import json
import os

import pytest

from bertg4 import data as D
from bertg4.text import TextError


@pytest.mark.parametrize("split,questions", [("train", 62), ("dev", 25)])
def test_squad_small_is_valid(split, questions):
    path = os.path.join(D.SQUAD_SMALL, f"{split}.json")
    raw = json.load(open(path, encoding="utf-8"))
    assert raw["version"] == "1.1"
    qa = D.read_squad(path)
    assert len(qa) == questions and len(set(qa.ids)) == len(qa)
    for i in range(len(qa)):
        assert qa.answers[i], qa.ids[i]
        for (start, end), text in zip(qa.spans(i), qa.answers[i]):  # spans() checks every offset
            assert qa.contexts[i][start:end] == text and text.strip() == text
    assert sum(len(a) > 1 for a in qa.answers) >= 5  # several accepted answers for some questions


def test_squad_small_dev_passages_differ_from_training():
    train, dev = D.squad_small("train"), D.squad_small("dev")
    assert not set(train.contexts) & set(dev.contexts)


def test_a_wrong_answer_start_is_named(tmp_path):
    bad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The sky is blue.",
           "qas": [{"id": "q1", "question": "What colour?", "answers": [{"text": "blue", "answer_start": 3}]}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    qa = D.read_squad(str(path))
    with pytest.raises(TextError, match=r"question 'q1': answer_start 3 points at ' sky', not at the answer 'blue'"):
        qa.spans(0)


def _serve(tmp_path, monkeypatch, payload: bytes, size=None, digest=None):
    """Publish ``payload`` as dev-v1.1.json at a file:// URL; pin the given size/digest."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "dev-v1.1.json").write_bytes(payload)
    monkeypatch.setattr(D, "SQUAD_URL", site.as_uri() + "/")
    monkeypatch.setitem(D.SQUAD_FILES, "dev", ("dev-v1.1.json", len(payload) if size is None else size,
                                               hashlib.sha256(payload).hexdigest() if digest is None else digest))
    return tmp_path / "cache"


def test_download_squad_refuses_a_bad_checksum(tmp_path, monkeypatch):
    payload = open(os.path.join(D.SQUAD_SMALL, "dev.json"), "rb").read()
    cache = _serve(tmp_path, monkeypatch, payload, digest="0" * 64)
    with pytest.raises(RuntimeError, match=r"sha256 [0-9a-f]{64}; the published dev-v1\.1\.json has "
                       f"{len(payload)} bytes and sha256 0{{64}}; the file was not kept"):
        D.download_squad("dev", cache_dir=str(cache))
    assert not os.listdir(cache / "squad")  # nothing half-checked is left behind


def test_download_squad_refuses_a_wrong_size(tmp_path, monkeypatch):
    payload = open(os.path.join(D.SQUAD_SMALL, "dev.json"), "rb").read()
    cache = _serve(tmp_path, monkeypatch, payload, size=4854279)
    with pytest.raises(RuntimeError, match=f"downloaded {len(payload)} bytes .* has 4854279 bytes"):
        D.download_squad("dev", cache_dir=str(cache))


def test_download_squad_keeps_a_verified_file(tmp_path, monkeypatch):
    payload = open(os.path.join(D.SQUAD_SMALL, "dev.json"), "rb").read()
    cache = _serve(tmp_path, monkeypatch, payload)
    path = D.download_squad("dev", cache_dir=str(cache))
    assert path == str(cache / "squad" / "dev-v1.1.json") and len(D.read_squad(path)) == 25


def test_download_squad_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "SQUAD_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(RuntimeError, match="cannot download SQuAD v1.1 dev from .* pass --data-dir"):
        D.download_squad("dev", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="split must be 'train' or 'dev'"):
        D.download_squad("test", cache_dir=str(tmp_path / "cache"))
