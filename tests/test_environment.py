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
