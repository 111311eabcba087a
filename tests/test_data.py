"""GLUE SST-2 dev ships with the repository and is found from a fresh clone: no test or notebook
depends on a folder beside it. The training split is a download, and saying so is part of the
error."""
import os
import subprocess
import sys

import pytest

from bertg4 import data as D

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_dev_is_the_glue_file():
    assert D.SST2_DEV == os.path.join(ROOT, "data", "sst2", "dev.tsv")
    assert D.sha256(D.SST2_DEV) == "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"
    with open(D.SST2_DEV, encoding="utf-8") as f:
        assert f.readline() == "sentence\tlabel\n"
    ts = D.read_tsv(D.SST2_DEV)
    assert (len(ts), ts.labels.count(1), ts.labels.count(0)) == (872, 444, 428)
    assert (len(ts), ts.labels.count(1), ts.labels.count(0)) == tuple(D.SST2_DEV_ROWS.values())
    readme = open(os.path.join(ROOT, "data", "sst2", "README.md"), encoding="utf-8").read()
    assert D.SST2_SHA256["dev.tsv"] in readme and "872" in readme and "Socher" in readme


def test_fixture_reads_the_repository_copy(sst2_dev):
    assert sst2_dev.source == D.SST2_DEV and len(sst2_dev) == 872


def _only_repository(monkeypatch, tmp_path):
    """No $BERTG4_DATA_DIR, no ../shared, an empty download cache: a fresh clone."""
    monkeypatch.delenv("BERTG4_DATA_DIR", raising=False)
    monkeypatch.setattr(D, "CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "REPO_ROOT", ROOT)
    real = D.sst2_candidates

    def candidates(data_dir=None):
        return [d for d in real(data_dir) if os.sep + "shared" + os.sep not in d + os.sep]

    monkeypatch.setattr(D, "sst2_candidates", candidates)
    monkeypatch.chdir(tmp_path)


def test_load_sst2_dev_finds_the_repository_copy_alone(monkeypatch, tmp_path):
    _only_repository(monkeypatch, tmp_path)
    assert not any("shared" in d for d in D.sst2_candidates())
    ts = D.load_sst2("dev")
    assert ts.source == D.SST2_DEV and len(ts) == 872


def test_missing_train_says_how_to_get_it(monkeypatch, tmp_path):
    _only_repository(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        D.load_sst2("train")
    for hint in ("--download-data", "--data-dir", "$BERTG4_DATA_DIR", "only the dev split ships"):
        assert hint in str(e.value)


def test_a_named_folder_comes_before_the_shipped_copy(monkeypatch, tmp_path):
    mine = tmp_path / "mine" / "sst2"
    mine.mkdir(parents=True)
    (mine / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    monkeypatch.setenv("BERTG4_DATA_DIR", str(tmp_path / "mine"))
    assert D.find_sst2("dev") == str(mine / "dev.tsv")
    monkeypatch.delenv("BERTG4_DATA_DIR")
    assert D.find_sst2("dev", data_dir=str(tmp_path / "mine")) == str(mine / "dev.tsv")
    assert D.find_sst2("dev") == D.SST2_DEV


def test_found_from_another_working_directory(tmp_path):
    """A separate interpreter started elsewhere, with no data variables set."""
    env = {k: v for k, v in os.environ.items() if k not in ("BERTG4_DATA_DIR", "PYTHONPATH")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", "from bertg4 import data as D; ts = D.load_sst2('dev'); "
                          "print(ts.source, len(ts))"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [D.SST2_DEV, "872"]
