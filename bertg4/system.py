"""Facts about the machine and the software a result was measured with.

The bottom of the package: engines, benchmarks and the command line all read these, and
this module imports nothing of bertg4's but the version string.
"""
from __future__ import annotations

import os
import platform
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
