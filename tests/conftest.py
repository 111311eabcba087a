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
    """The real GLUE SST-2 dev sentences (../shared/data/sst2 in CI)."""
    path = D.find_sst2("dev")
    if path is None:
        pytest.skip("GLUE SST-2 dev.tsv not found (looked in ../shared/data/sst2, $BERTG4_DATA_DIR "
                    "and the download cache); run `bertg4 deploy --download-data` once online")
    ts = D.read_tsv(path)
    assert len(ts) == 872, f"{path} has {len(ts)} rows, GLUE SST-2 dev has 872"
    return ts


@pytest.fixture(scope="session")
def embedded():
    from bertg4.checkpoint import load_checkpoint
    return load_checkpoint("embedded")

