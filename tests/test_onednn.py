"""The ``onednn-fp32`` rung: the graph pass carried on to a CPU. Every Linear runs on oneDNN
with its weight prepacked once, bias+GELU inside the FFN's first Linear; answers equal to
the graph pass's own, refused where it cannot run or be exported."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bertg4
from bertg4.pt import engine as E
from bertg4.pt import onednn
from bertg4.pt.graph_pass import bias_gelu
from bertg4.recipe import NotApplicable, Recipe, get_recipe

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN prepacked Linear")


@pytest.fixture(scope="module")
def texts(sst2_dev):
    return list(sst2_dev.first[:20]) + ["ok", "a", "the film , the film , the film"]


@pytest.mark.parametrize("task", ["SST", "embedding", "QA"])
def test_answers_equal_the_graph_pass(embedded, texts, task):
    rows = list(zip(texts[:8], texts[8:16])) if task == "QA" else texts
    ref = bertg4.load("embedded", task=task, recipe="graph-pass-fp32", seq_length=64, checkpoint=embedded)
    new = bertg4.load("embedded", task=task, recipe="onednn-fp32", seq_length=64, checkpoint=embedded)
    batch = ref.featurize(rows)
    batch = batch.batch if hasattr(batch, "batch") else batch
    for mode in ("fixed", "packed"):
        a = np.asarray(ref.run_batch(batch, mode), np.float64)
        b = np.asarray(new.run_batch(batch, mode), np.float64)
        finite = np.isfinite(a)  # QA: positions outside the context are -inf in both
        assert (finite == np.isfinite(b)).all() and (a[~finite] == b[~finite]).all()
        assert np.abs(np.where(finite, a - b, 0.0)).max() <= 1e-5 * max(1.0, np.abs(a[finite]).max()), (task, mode)


def test_every_linear_is_prepacked_and_gelu_fused(embedded):
    p = bertg4.load("embedded", task="SST", recipe="onednn-fp32", checkpoint=embedded)
    layers = p.config.num_layers
    report = p.graph_report
    assert report["onednn_linear_gelu"] == layers and report["bias_gelu_fused"] == layers
    # per layer: QKV, attention output, FFN output; then pooler and classifier
    assert report["onednn_linear"] == 3 * layers + 2
    for gm in (p.module, p.packed_module):
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert F.linear not in targets and bias_gelu not in targets and F.gelu not in targets
        assert not [n for n in gm.graph.nodes if n.op == "call_module"
                    and isinstance(gm.get_submodule(n.target), torch.nn.Linear)]
        assert targets.count(onednn.linear_gelu) == layers
    assert any("oneDNN" in n for n in p.notes)
    # the float weights the prepacked copies replace are gone: 2-D tensors left are the embeddings
    left = {n for gm in (p.module, p.packed_module) for n, t in gm.state_dict(keep_vars=True).items()
            if t.dim() == 2 and not n.startswith("onednn_w_")}
    assert left and all(n.endswith("_embed.weight") for n in left), sorted(left)


def test_refused_where_it_cannot_run(embedded, tmp_path):
    r = get_recipe("onednn-fp32")
    with pytest.raises(NotApplicable, match="CPU kernel"):
        E.check_applicable(r, torch.device("cuda"))
    with pytest.raises(NotApplicable, match="opaque"):
        bertg4.load("embedded", task="SST", recipe="onednn-fp32", checkpoint=embedded).export(str(tmp_path / "x"))
    for engine in ("hf", "ort"):
        with pytest.raises(NotApplicable):
            bertg4.load("embedded", task="SST", engine=engine, recipe="onednn-fp32", checkpoint=embedded)
    with pytest.raises(ValueError, match="needs dtype float32 and graph_pass"):
        Recipe("x", attention="interleaved", onednn=True)
    with pytest.raises(ValueError, match="needs dtype float32 and graph_pass"):
        Recipe("x", "float16", attention="interleaved", graph_pass=True, onednn=True)
