"""Evaluation data: GLUE SST-2, SQuAD-format files, and the small samples in ``data/``.

SST-2 is looked for, in order, in ``data_dir``, ``$BERTG4_DATA_DIR``, this repository's
``data/sst2`` (which ships the dev split, :data:`SST2_DEV`), the ``shared/data`` folder beside
this repository, and the download cache (``~/.cache/bertg4``): a folder the user names comes
first, then the shipped dev split, then the places a training split may have been put.
:func:`download_sst2` fetches the official GLUE file when online and checks its SHA-256.
SQuAD v1.1 is looked for the same way (folder ``squad``) and :func:`download_squad` fetches
the official files, checking size and SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .text import TextError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO_ROOT, "data", "samples")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bertg4")

SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
#: GLUE SST-2 dev as shipped in this repository (872 rows; data/sst2/README.md)
SST2_DEV = os.path.join(REPO_ROOT, "data", "sst2", "dev.tsv")
SST2_DEV_ROWS = {"rows": 872, "positive": 444, "negative": 428}
SST2_SHA256 = {  # the GLUE distribution's files
    "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
}


@dataclass
class TextSet:
    """Sentences (or pairs) with optional labels, and where they came from."""
    first: list[str]
    second: list[str] | None
    labels: list | None
    source: str

    def __len__(self):
        return len(self.first)


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise TextError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}, "
                        f"line {line})") from None


def read_tsv(path: str, label_type=int) -> TextSet:
    """A GLUE-style TSV with a header: ``sentence[, sentence2 / question], [label]``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    lines = _read_text(path).splitlines()
    if not lines:
        raise TextError(f"{path}: empty file")
    header = lines[0].split("\t")
    cols = {name: i for i, name in enumerate(header)}
    first_col = next((c for c in ("sentence", "sentence1", "question", "text") if c in cols), None)
    if first_col is None:
        raise TextError(f"{path}: header {header} has no sentence/sentence1/question column")
    second_col = next((c for c in ("sentence2", "sentence") if c in cols and c != first_col), None)
    first, second, labels = [], [] if second_col else None, [] if "label" in cols else None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != len(header):
            raise TextError(f"{path}:{n}: {len(parts)} fields, header has {len(header)}")
        first.append(parts[cols[first_col]])
        if second_col:
            second.append(parts[cols[second_col]])
        if labels is not None:
            try:
                labels.append(label_type(parts[cols["label"]]))
            except ValueError:
                raise TextError(f"{path}:{n}: label {parts[cols['label']]!r} is not "
                                f"{label_type.__name__}") from None
    if not first:
        raise TextError(f"{path}: no rows after the header")
    return TextSet(first, second, labels, os.path.abspath(path))


def sst2_candidates(data_dir: str | None = None) -> list[str]:
    dirs = []
    if data_dir:
        dirs += [data_dir, os.path.join(data_dir, "sst2"), os.path.join(data_dir, "SST-2")]
    if os.environ.get("BERTG4_DATA_DIR"):
        d = os.environ["BERTG4_DATA_DIR"]
        dirs += [os.path.join(d, "sst2"), os.path.join(d, "SST-2")]
    dirs += [os.path.join(REPO_ROOT, "data", "sst2"),
             os.path.join(REPO_ROOT, "..", "shared", "data", "sst2"),
             os.path.join(os.getcwd(), "..", "shared", "data", "sst2"),
             os.path.join(CACHE, "glue", "SST-2")]
    return [os.path.normpath(d) for d in dirs]


def find_sst2(split: str = "dev", data_dir: str | None = None) -> str | None:
    if split not in ("dev", "train"):
        raise ValueError(f"SST-2 split must be 'dev' or 'train', got {split!r}")
    for d in sst2_candidates(data_dir):
        p = os.path.join(d, f"{split}.tsv")
        if os.path.isfile(p):
            return p
    return None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_sst2(cache_dir: str = CACHE) -> str:
    """Download and unpack GLUE SST-2 into ``cache_dir/glue/SST-2``; verify checksums."""
    import io
    import urllib.request
    import zipfile
    target = os.path.join(cache_dir, "glue")
    try:
        with urllib.request.urlopen(SST2_URL, timeout=60) as r:
            payload = r.read()
    except OSError as e:
        raise RuntimeError(f"cannot download SST-2 from {SST2_URL} ({e}); put dev.tsv/train.tsv in "
                           "a folder and pass --data-dir, or set BERTG4_DATA_DIR") from None
    with zipfile.ZipFile(io.BytesIO(payload)) as z:
        z.extractall(target)
    folder = os.path.join(target, "SST-2")
    for name, digest in SST2_SHA256.items():
        got = sha256(os.path.join(folder, name))
        if got != digest:
            raise RuntimeError(f"{folder}/{name}: sha256 {got} differs from the GLUE file's {digest}")
    return folder


def load_sst2(split: str = "dev", data_dir: str | None = None, download: bool = False) -> TextSet:
    path = find_sst2(split, data_dir)
    if path is None and download:
        path = os.path.join(download_sst2(), f"{split}.tsv")
    if path is None:
        raise FileNotFoundError(
            f"GLUE SST-2 {split}.tsv not found in {sst2_candidates(data_dir)}. Get it with "
            "--download-data (online; download=True in Python), or point --data-dir (data_dir=) or "
            "$BERTG4_DATA_DIR at a folder that holds sst2/{split}.tsv"
            + ("; only the dev split ships with bertg4 (data/sst2/README.md)" if split == "train" else ""))
    return read_tsv(path)


def sample_sst() -> TextSet:
    """32 movie-review sentences written for this project (labels: 1 positive, 0 negative)."""
    return read_tsv(os.path.join(SAMPLES, "sst_sample.tsv"))


def calibration_batch(tokenizer, seq_length: int, vocab_size: int):
    """What INT8 calibrates on: the 32 sample sentences shipped with bertg4 (random token ids
    when there is no vocabulary)."""
    import numpy as np
    from .text import Batch
    if tokenizer is not None:
        return tokenizer.encode_sentences(sample_sst().first, seq_len=seq_length)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab_size, size=(32, seq_length))
    return Batch(ids, np.zeros_like(ids), np.full(32, seq_length, np.int64))


@dataclass
class QASet:
    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]
    source: str
    #: per question, each answer's character offset in its context (``None`` where the file has none)
    answer_starts: list[list[int | None]] | None = None

    def __len__(self):
        return len(self.ids)

    def spans(self, i: int) -> list[tuple[int, int]]:
        """Question ``i``'s answers as ``(start, end)`` character spans of its context.

        Raises :class:`TextError`, naming the question, where an answer has no
        ``answer_start`` or its offset does not point at its text.
        """
        out = []
        starts = self.answer_starts[i] if self.answer_starts is not None else [None] * len(self.answers[i])
        for text, start in zip(self.answers[i], starts):
            if start is None:
                raise TextError(f"{self.source}: question {self.ids[i]!r}: answer {text!r} has no "
                                "answer_start")
            found = self.contexts[i][start:start + len(text)]
            if found != text:
                raise TextError(f"{self.source}: question {self.ids[i]!r}: answer_start {start} points "
                                f"at {found!r}, not at the answer {text!r}")
            out.append((start, start + len(text)))
        return out


def read_squad(path: str) -> QASet:
    """A SQuAD v1.1-format JSON file."""
    try:
        d = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise TextError(f"{path}: not valid JSON ({e})") from None
    ids, qs, cs, ans, starts = [], [], [], [], []
    try:
        for article in d["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    ids.append(qa["id"])
                    qs.append(qa["question"])
                    cs.append(para["context"])
                    ans.append([a["text"] for a in qa.get("answers", [])])
                    starts.append([a.get("answer_start") if isinstance(a.get("answer_start"), int)
                                   and not isinstance(a.get("answer_start"), bool) else None
                                   for a in qa.get("answers", [])])
    except (KeyError, TypeError, AttributeError) as e:
        raise TextError(f"{path}: not SQuAD format (missing {e})") from None
    if not ids:
        raise TextError(f"{path}: no questions")
    return QASet(ids, qs, cs, ans, os.path.abspath(path), starts)


# SQuAD v1.1, as published at https://rajpurkar.github.io/SQuAD-explorer/. Sizes and SHA-256
# digests of the published files as recorded by other projects that pin them (ParlAI's
# parlai/tasks/squad/build.py and the Hugging Face ``squad`` dataset's download checksums,
# 30,288,272 and 4,854,279 bytes); download_squad refuses a file that differs.
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
SQUAD_FILES = {  # split: (file name, size in bytes, sha256)
    "train": ("train-v1.1.json", 30288272,
              "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"),
    "dev": ("dev-v1.1.json", 4854279,
            "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
}
SQUAD_SMALL = os.path.join(REPO_ROOT, "data", "squad_small")


def _squad_split(split: str) -> tuple[str, int, str]:
    if split not in SQUAD_FILES:
        raise ValueError(f"SQuAD split must be 'train' or 'dev', got {split!r}")
    return SQUAD_FILES[split]


def squad_candidates(data_dir: str | None = None) -> list[str]:
    dirs = []
    if data_dir:
        dirs += [data_dir, os.path.join(data_dir, "squad"), os.path.join(data_dir, "SQuAD")]
    if os.environ.get("BERTG4_DATA_DIR"):
        dirs.append(os.path.join(os.environ["BERTG4_DATA_DIR"], "squad"))
    dirs += [os.path.join(REPO_ROOT, "..", "shared", "data", "squad"),
             os.path.join(os.getcwd(), "..", "shared", "data", "squad"),
             os.path.join(CACHE, "squad")]
    return [os.path.normpath(d) for d in dirs]


def find_squad(split: str = "dev", data_dir: str | None = None) -> str | None:
    """The path of SQuAD v1.1 ``train-v1.1.json``/``dev-v1.1.json`` if found locally."""
    name = _squad_split(split)[0]
    for d in squad_candidates(data_dir):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def download_squad(split: str = "dev", cache_dir: str = CACHE) -> str:
    """Download SQuAD v1.1 ``split`` (``train`` or ``dev``) into ``cache_dir/squad``.

    The file is checked against the published file's size and SHA-256 (``SQUAD_FILES``)
    before it is kept; a file that differs is deleted and refused. Returns its path.
    """
    import urllib.request
    name, size, digest = _squad_split(split)
    url = SQUAD_URL + name
    folder = os.path.join(cache_dir, "squad")
    path = os.path.join(folder, name)
    if os.path.isfile(path) and os.path.getsize(path) == size and sha256(path) == digest:
        return path
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
    except (OSError, ValueError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RuntimeError(f"cannot download SQuAD v1.1 {split} from {url} ({e}); put {name} in a "
                           "folder and pass --data-dir (or --data FILE), or set BERTG4_DATA_DIR") from None
    got_size, got = os.path.getsize(tmp), sha256(tmp)
    if got_size != size or got != digest:
        os.remove(tmp)
        raise RuntimeError(f"{url}: downloaded {got_size} bytes with sha256 {got}; the published "
                           f"{name} has {size} bytes and sha256 {digest}; the file was not kept")
    try:
        read_squad(tmp)
    except TextError as e:
        os.remove(tmp)
        raise RuntimeError(f"{url}: {e}") from None
    os.replace(tmp, path)
    return path


def load_squad(split: str = "dev", data_dir: str | None = None, download: bool = False) -> QASet:
    """SQuAD v1.1 ``split`` from the usual places (or downloaded with ``download=True``)."""
    path = find_squad(split, data_dir)
    if path is None and download:
        path = download_squad(split)
    if path is None:
        raise FileNotFoundError(
            f"SQuAD v1.1 {_squad_split(split)[0]} not found in {squad_candidates(data_dir)}; pass "
            f"--download-data (online), --data-dir, or a SQuAD-format file (e.g. "
            f"{os.path.relpath(os.path.join(SQUAD_SMALL, split + '.json'))}, this project's small set)")
    return read_squad(path)


def squad_small(split: str = "dev") -> QASet:
    """This project's small SQuAD v1.1-format set (``data/squad_small``): 62 training and 25
    dev questions on passages written for bertg4."""
    if split not in ("train", "dev"):
        raise ValueError(f"squad_small split must be 'train' or 'dev', got {split!r}")
    return read_squad(os.path.join(SQUAD_SMALL, f"{split}.json"))


def sample_qa() -> QASet:
    """Six questions on two short paragraphs, SQuAD v1.1 format, written for this project."""
    return read_squad(os.path.join(SAMPLES, "qa_sample.json"))
