import os

import pytest

from bertg4 import data as D

MEASURED = []  # (name, value) pairs printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("bertg4 measured values")
        for name, value in MEASURED:
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def measured():
    def add(name, value):
        MEASURED.append((name, value))
    return add


@pytest.fixture(scope="session")
def sst2_dev():
    """GLUE SST-2 dev as shipped in this repository (data/sst2/dev.tsv): a missing or altered
    file is a failure, never a skip."""
    assert os.path.isfile(D.SST2_DEV), f"{D.SST2_DEV} is missing: it ships with the repository " \
                                       "(data/sst2/README.md)"
    assert D.sha256(D.SST2_DEV) == D.SST2_SHA256["dev.tsv"], f"{D.SST2_DEV} differs from GLUE SST-2 dev"
    ts = D.read_tsv(D.SST2_DEV)
    assert len(ts) == D.SST2_DEV_ROWS["rows"], f"{D.SST2_DEV} has {len(ts)} rows, GLUE SST-2 dev has 872"
    return ts


@pytest.fixture(scope="session")
def embedded():
    from bertg4.checkpoint import load_checkpoint
    return load_checkpoint("embedded")
