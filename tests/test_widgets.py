import matplotlib
import pytest

matplotlib.use("Agg")

import bertg4  # noqa: E402
from bertg4 import data  # noqa: E402
from bertg4.bench import sweep_batch_sizes  # noqa: E402
from bertg4.widgets import batch_size_slider, batch_size_view  # noqa: E402


@pytest.fixture(scope="module")
def records():
    p = bertg4.load(task="SST", seq_length=32)
    return sweep_batch_sizes(p, p.featurize(data.sample_sst().first), [1, 3], warmup=1, iters=2,
                             progress=False)


def test_view_is_a_pure_function_of_the_batch_size(records):
    view = batch_size_view(records)
    assert view(3) is records[1]
    with pytest.raises(ValueError, match=r"batch size 7 was not measured; measured: \[1, 3\]"):
        view(7)


def test_slider_moves_headless(records):
    w = batch_size_slider(records)
    assert w.result["batch_size"] == 1
    w.children[0].value = 3
    assert w.result["batch_size"] == 3 and w.result["latency_ms_p50"] > 0
