"""Evaluation data: GLUE SST-2, SQuAD-format files, and the small samples in ``data/``.

SST-2 is looked for, in order, in ``data_dir``, ``$BERTG4_DATA_DIR``, the
``shared/data`` folder beside this repository, and the download cache
(``~/.cache/bertg4``). :func:`download_sst2` fetches the official GLUE file when
online and checks its SHA-256.
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
    dirs += [os.path.join(REPO_ROOT, "..", "shared", "data", "sst2"),
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
            f"SST-2 {split}.tsv not found in {sst2_candidates(data_dir)}; pass --download "
            "(online) or --data-dir")
    return read_tsv(path)


def sample_sst() -> TextSet:
    """32 movie-review sentences written for this project (labels: 1 positive, 0 negative)."""
    return read_tsv(os.path.join(SAMPLES, "sst_sample.tsv"))


@dataclass
class QASet:
    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]
    source: str

    def __len__(self):
        return len(self.ids)


def read_squad(path: str) -> QASet:
    """A SQuAD v1.1-format JSON file."""
    try:
        d = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise TextError(f"{path}: not valid JSON ({e})") from None
    ids, qs, cs, ans = [], [], [], []
    try:
        for article in d["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    ids.append(qa["id"])
                    qs.append(qa["question"])
                    cs.append(para["context"])
                    ans.append([a["text"] for a in qa.get("answers", [])])
    except (KeyError, TypeError) as e:
        raise TextError(f"{path}: not SQuAD format (missing {e})") from None
    if not ids:
        raise TextError(f"{path}: no questions")
    return QASet(ids, qs, cs, ans, os.path.abspath(path))


def sample_qa() -> QASet:
    """Six questions on two short paragraphs, SQuAD v1.1 format, written for this project."""
    return read_squad(os.path.join(SAMPLES, "qa_sample.json"))
