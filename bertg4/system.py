"""Facts about the machine and the software a result was measured with.

The bottom of the package: engines, benchmarks and the command line all read these, and
this module imports nothing of bertg4's but the version string.
"""
from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys


def cpu_name() -> str:
    """The CPU's model name and core count: the device name of CPU records."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies 8-bit integers into 32-bit sums in one instruction (VNNI)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def versions() -> dict:
    """Versions of Python and of the installed libraries that matter to the numbers."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("bertg4", "torch", "numpy", "transformers", "tokenizers", "mxnet", "mxnet-cu102",
                 "gluonnlp", "onnxruntime", "ray", "sentence-transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if "bertg4" not in out:  # running from a source tree that is not installed
        from . import __version__
        out["bertg4"] = __version__
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def command_line() -> str:
    """The command as a user would type it (``bertg4 ...`` for the console script and -m)."""
    prog = os.path.basename(sys.argv[0])
    if prog in ("cli.py", "__main__.py", "bertg4"):
        prog = "bertg4"
    return " ".join([prog] + sys.argv[1:])


def system_gpus() -> list[str]:
    """The NVIDIA GPUs the operating system sees, whatever torch sees: ``nvidia-smi -L``'s lines,
    else the folders of ``/proc/driver/nvidia/gpus``; empty where there is no NVIDIA driver."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0:
            gpus = [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]
            if gpus:
                return gpus
    try:
        return [f"GPU at PCI {bus}" for bus in sorted(os.listdir("/proc/driver/nvidia/gpus"))]
    except OSError:
        return []


def default_device() -> str:
    """The device the notebooks run on: ``"cuda"`` when torch sees a GPU, ``"cpu"`` when the
    machine has none.

    Raises :class:`RuntimeError` when the system shows an NVIDIA GPU (``nvidia-smi -L`` or
    ``/proc/driver/nvidia/gpus``) that torch cannot use -- a CPU build of torch, or a driver too
    old for torch's CUDA -- instead of silently measuring the CPU; ``BERTG4_ALLOW_CPU=1`` runs
    on the CPU anyway."""
    import torch
    if torch.cuda.is_available():
        return "cuda"
    gpus = system_gpus()
    if gpus and os.environ.get("BERTG4_ALLOW_CPU") != "1":
        build = (f"a CPU-only build ({torch.__version__})" if torch.version.cuda is None else
                 f"built for CUDA {torch.version.cuda}, which this driver cannot run")
        raise RuntimeError(
            f"the system shows {len(gpus)} NVIDIA GPU(s) ({gpus[0]}) but torch cannot use them: "
            f"torch is {build}. Install a CUDA build of torch that matches the driver (see "
            "environment.yml), or set BERTG4_ALLOW_CPU=1 to run on the CPU on purpose.")
    return "cpu"


def full_sizes_allowed(device: str) -> bool:
    """Whether the notebooks run the article's full sizes on ``device``: always on a GPU; on a
    CPU only when ``BERTG4_FULL=1`` (full sizes take hours there), otherwise small sizes."""
    if not str(device).startswith("cpu"):
        return True
    return os.environ.get("BERTG4_FULL") == "1"


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]):
    """Set environment variables for the duration of a block; restore (or remove) them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
