"""Checks that need a CUDA GPU (scripts/gpu_suite.sh runs them on one); skipped elsewhere."""
import numpy as np
import pytest
import torch

import bertg4
from bertg4.recipe import ladder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cpu_reference(embedded):
    return bertg4.load(task="embedding", engine="hf", checkpoint=embedded, device="cpu")


def test_cuda_fp32_matches_cpu_reference(embedded, cpu_reference, sst2_dev, measured):
    gpu = bertg4.load(task="embedding", checkpoint=embedded, device="cuda")
    batch = gpu.featurize(sst2_dev.first)
    err = np.abs(gpu.infer(batch, 128) - cpu_reference.infer(batch, 128)).max()
    measured("cuda fp32 embeddings vs CPU transformers, max-abs", f"{err:.2e}")
    assert err < 1e-4


def test_cuda_fp16_close_to_fp32(embedded, cpu_reference, sst2_dev, measured):
    half = bertg4.load(task="embedding", checkpoint=embedded, device="cuda", dtype="float16")
    batch = half.featurize(sst2_dev.first)
    a, ref = half.infer(batch, 128), cpu_reference.infer(batch, 128)
    assert np.isfinite(a).all()
    rel = np.linalg.norm(a - ref) / np.linalg.norm(ref)
    cos = (a * ref).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(ref, axis=1)
    measured("cuda fp16 embeddings vs fp32: relative error", f"{rel:.2e}")
    measured("cuda fp16 embeddings vs fp32: min cosine", f"{cos.min():.6f}")
    assert rel < 5e-3 and cos.min() > 0.999


def test_cuda_export_roundtrip(embedded, sst2_dev, tmp_path):
    from bertg4.pt import load_exported
    live = bertg4.load(task="SST", checkpoint=embedded, device="cuda", dtype="float16")
    live.export(str(tmp_path))
    again = load_exported(str(tmp_path), "cuda")
    batch = live.featurize(sst2_dev.first[:64])
    np.testing.assert_allclose(again(batch), live(batch), atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------- the ladder on CUDA

@pytest.fixture(scope="module")
def cuda_baseline(embedded, sst2_dev):
    p = bertg4.load(task="embedding", checkpoint=embedded, device="cuda")
    batch = p.featurize(sst2_dev.first[:256])
    return batch, p.infer(batch, 64).astype(np.float64)


@pytest.mark.parametrize("rung", [r.name for r in ladder()])
def test_every_rung_runs_on_cuda_close_to_fp32(embedded, cuda_baseline, rung, measured):
    batch, ref = cuda_baseline
    p = bertg4.load(task="embedding", checkpoint=embedded, device="cuda", recipe=rung)
    out = p.infer(batch, 64).astype(np.float64)
    assert np.isfinite(out).all()
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    measured(f"cuda MiniLM {rung} vs fp32: rel err / min cosine", f"{rel:.2e} / {cos.min():.6f}")
    assert rel < (1e-5 if rung == "baseline" else 1e-2) and cos.min() > 0.999


def test_cuda_graphs_equal_eager(embedded, sst2_dev, measured):
    eager = bertg4.load(task="SST", checkpoint=embedded, device="cuda", recipe="+graph_pass")
    graphs = bertg4.load(task="SST", checkpoint=embedded, device="cuda", recipe="all")
    batch = eager.featurize(sst2_dev.first[:40])
    worst = 0.0
    for size in (1, 8, 1, 40, 8):  # new shapes are captured, known shapes replayed
        part = batch[:size]
        a, b = eager(part), graphs(part)
        assert np.isfinite(b).all()
        worst = max(worst, float(np.abs(a - b).max()))
    assert len(graphs._graphs.graphs) == 3
    measured("cuda graphs vs eager (fp16 logits), max-abs", f"{worst:.2e}")
    assert worst < 1e-3


def test_true_fp16_is_set_for_the_call_only(embedded, sst2_dev):
    backend = torch.backends.cuda.matmul
    before = backend.allow_fp16_accumulation
    p = bertg4.load(task="SST", checkpoint=embedded, device="cuda", recipe="+true_fp16")
    seen, inner = [], p.module

    class Spy(torch.nn.Module):
        fail = False

        def forward(self, *args):
            seen.append(backend.allow_fp16_accumulation)
            if self.fail:
                raise RuntimeError("boom")
            return inner(*args)

    p.module = spy = Spy()
    batch = p.featurize(sst2_dev.first[:4])
    p(batch)
    assert seen == [True] and backend.allow_fp16_accumulation == before
    spy.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        p(batch)
    assert seen == [True, True] and backend.allow_fp16_accumulation == before


def test_true_fp16_changes_gemm_numerics_within_tolerance(embedded, sst2_dev, measured):
    safe = bertg4.load(task="embedding", checkpoint=embedded, device="cuda", recipe="+interleaved")
    true = bertg4.load(task="embedding", checkpoint=embedded, device="cuda", recipe="+true_fp16")
    batch = safe.featurize(sst2_dev.first[:256])
    a, b = safe.infer(batch, 64), true.infer(batch, 64)
    assert np.isfinite(b).all()
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    measured("cuda true fp16 vs fp32-accumulated fp16 embeddings, rel diff", f"{rel:.2e}")
    assert rel < 1e-2


@pytest.mark.parametrize("recipe", ["sdpa-fp16", "+graph_pass", "all"])
def test_cuda_packed_equals_fixed(embedded, sst2_dev, recipe, measured):
    """Packed on a GPU: FlashAttention varlen (sdpa-fp16), re-padded interleaved attention
    (+graph_pass) and CUDA graphs over token-count buckets (all) give fixed padding's outputs."""
    p = bertg4.load(task="SST", checkpoint=embedded, device="cuda", recipe=recipe)
    batch = p.featurize(sst2_dev.first[:256])
    fixed = p.infer(batch, 128, padding="fixed").astype(np.float64)
    packed = p.infer(batch, 128, padding="packed")
    err = np.abs(packed - fixed).max()
    measured(f"cuda {recipe} packed vs fixed logits, max-abs", f"{err:.2e}")
    assert np.isfinite(packed).all() and err < 2e-2
    assert (packed.argmax(-1) == fixed.argmax(-1)).mean() >= 0.99
