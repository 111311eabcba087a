"""The conda files install exactly what pyproject.toml declares (no second list to drift)."""
import os
import re
import tomllib

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the conda files")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("conda_file", ["environment.yml"])
def test_conda_pip_list_matches_pyproject(conda_file):
    project = _pyproject()
    extras = project["optional-dependencies"]
    with open(os.path.join(ROOT, conda_file), encoding="utf-8") as f:
        env = yaml.safe_load(f)
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert "pip" in deps and any(str(d).startswith("python=") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    declared = {_name(r): r for r in project["dependencies"]}
    for group in extras.values():
        declared.update({_name(r): r for r in group})
    editable = [p for p in pip if p.startswith("-e .")]
    assert len(editable) == 1, f"{conda_file}: install the project once, editable, with its extras"
    named = re.fullmatch(r"-e \.\[([\w,-]+)\]", editable[0])
    assert named, editable[0]
    for extra in named.group(1).split(","):
        assert extra in extras, f"{conda_file} names extra {extra!r}, not in pyproject.toml"
    assert "cpu" not in named.group(1), "a GPU environment must not pin the CPU build of torch"
    for req in pip:
        if req.startswith("-e "):
            continue
        assert _name(req) in declared and declared[_name(req)] == req, \
            f"{conda_file}: {req!r} drifts from pyproject.toml ({declared.get(_name(req))!r})"


def test_environment_brings_both_engines_and_cuda_10_2_libraries():
    with open(os.path.join(ROOT, "environment.yml"), encoding="utf-8") as f:
        deps = yaml.safe_load(f)["dependencies"]
    for lib in ("cudatoolkit=10.2", "cudnn=8", "nccl"):
        assert lib in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert any("mxnet-cu102" in p and "reference" in p for p in pip)
    extras = _pyproject()["optional-dependencies"]
    assert "mxnet-cu102==1.9.1" in extras["mxnet-cu102"] and "numpy==1.26.4" in extras["mxnet-cu102"]


def test_cpu_extra_pins_the_cpu_torch():
    assert _pyproject()["optional-dependencies"]["cpu"] == ["torch==2.13.0"]


# --- what the package needs of torch, and which device it runs on ---------------------------------

def test_torch_floor_has_every_api_the_package_uses():
    """torch.backends.cuda.matmul.allow_fp16_accumulation (the +true_fp16 rung) arrived in torch 2.7
    (pytorch/pytorch#144441); torch.export and torch.nn.attention are older."""
    import torch
    floor = next(r for r in _pyproject()["dependencies"] if _name(r) == "torch")
    assert floor == "torch>=2.7"
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    assert (major, minor) >= (2, 7)
    assert hasattr(torch.backends.cuda.matmul, "allow_fp16_accumulation")
    import torch.export  # noqa: F401
    import torch.nn.attention  # noqa: F401


def _fake_nvidia_smi(tmp_path, monkeypatch, output="GPU 0: Tesla T4 (UUID: GPU-0)", code=0):
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_default_device_refuses_a_gpu_torch_cannot_see(tmp_path, monkeypatch):
    import torch
    from bertg4 import system as S
    monkeypatch.delenv("BERTG4_ALLOW_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fake_nvidia_smi(tmp_path, monkeypatch)
    assert S.system_gpus() == ["GPU 0: Tesla T4 (UUID: GPU-0)"]
    with pytest.raises(RuntimeError) as e:
        S.default_device()
    for words in ("Tesla T4", "torch cannot use", "BERTG4_ALLOW_CPU=1", torch.__version__):
        assert words in str(e.value)
    monkeypatch.setenv("BERTG4_ALLOW_CPU", "1")
    assert S.default_device() == "cpu"


def test_default_device_without_and_with_a_gpu(tmp_path, monkeypatch):
    import torch
    from bertg4 import system as S
    monkeypatch.delenv("BERTG4_ALLOW_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fake_nvidia_smi(tmp_path, monkeypatch, output="NVIDIA-SMI has failed", code=9)  # no driver loaded
    real_listdir = os.listdir
    monkeypatch.setattr(S.os, "listdir", lambda p: (_ for _ in ()).throw(FileNotFoundError(p))
                        if p == "/proc/driver/nvidia/gpus" else real_listdir(p))
    assert S.system_gpus() == [] and S.default_device() == "cpu"
    # /proc/driver/nvidia/gpus counts when nvidia-smi is absent or silent
    monkeypatch.setattr(S.os, "listdir", lambda p: ["0000:00:1e.0"] if p == "/proc/driver/nvidia/gpus"
                        else real_listdir(p))
    assert S.system_gpus() == ["GPU at PCI 0000:00:1e.0"]
    with pytest.raises(RuntimeError, match="torch cannot use"):
        S.default_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert S.default_device() == "cuda"


def test_full_sizes_on_a_cpu_are_opt_in(monkeypatch):
    from bertg4.system import full_sizes_allowed
    monkeypatch.delenv("BERTG4_FULL", raising=False)
    assert full_sizes_allowed("cuda") and full_sizes_allowed("cuda:1")
    assert not full_sizes_allowed("cpu")
    monkeypatch.setenv("BERTG4_FULL", "1")
    assert full_sizes_allowed("cpu")
    monkeypatch.setenv("BERTG4_FULL", "0")
    assert not full_sizes_allowed("cpu")


def test_environment_names_its_ami_driver_and_the_nccl_soname():
    with open(os.path.join(ROOT, "environment.yml"), encoding="utf-8") as f:
        text = f.read()
    assert "Deep Learning Base AMI with Single CUDA (Ubuntu 22.04)" in text and "580.105.08" in text
    assert "sonames differ from PyTorch's" not in text  # libnccl.so.2 is shared, not different
    assert "libnccl.so.2" in text and "imports torch before MXNet" in text
    assert "never exported globally" in text and "--env LD_LIBRARY_PATH" in text


def test_mxnet_is_imported_after_torch():
    """The order environment.yml documents: torch's CUDA libraries (libnccl.so.2) load first."""
    import subprocess
    import sys
    code = ("import sys; from bertg4.mx import compat; compat.import_mxnet(); m = list(sys.modules); "
            "print(m.index('torch') < m.index('mxnet') if 'torch' in m else 'torch not loaded')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if "MXNetUnavailable" in out.stderr:
        pytest.skip("MXNet is not installed (pip install -e '.[mxnet]')")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
