"""Checks that need a CUDA GPU (scripts/gpu_suite.sh runs them on one); skipped elsewhere."""
import numpy as np
import pytest
import torch

import bertg4

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
