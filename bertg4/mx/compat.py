"""The one place bertg4 imports MXNet: numpy compatibility, then ``mxnet`` and ``gluonnlp``.

MXNet 1.9.1 (the last 1.x release, the one GluonNLP 0.10 runs on) was built against
numpy 1.x and still uses the alias ``numpy.bool``, which numpy 1.24 removed; numpy 2
breaks its C extension outright. The ``mxnet`` extra therefore pins ``numpy==1.26.4``,
and :func:`import_mxnet` restores the alias (``numpy.bool = bool``, exactly what it
was before numpy 1.24) before the first ``import mxnet``. Nothing else in bertg4
needs the alias; the rest of the project runs on the same pinned numpy.
"""
from __future__ import annotations

import importlib

INSTALL = ("pip install -e '.[mxnet]' (CPU: mxnet 1.9.1, gluonnlp 0.10.0, numpy 1.26.4), or "
           "'.[mxnet-cu102]' on a CUDA 10.2 machine such as a G4 instance (see environment.yml)")


class MXNetUnavailable(RuntimeError):
    """The mx engine cannot run in this environment; the message says how to install it."""


def numpy_shim(np_module=None) -> bool:
    """Give numpy back the ``bool`` alias MXNet 1.9 uses; True if it had to be added.

    Refuses numpy 2, which MXNet 1.9's compiled code cannot use.
    """
    if np_module is None:
        import numpy as np_module
    major = int(np_module.__version__.split(".")[0])
    if major >= 2:
        raise MXNetUnavailable(f"engine 'mx' needs MXNet 1.9.1 and GluonNLP 0.10.0, which need numpy < 2 "
                               f"(numpy {np_module.__version__} is installed): {INSTALL}")
    if "bool" in np_module.__dict__:
        return False
    np_module.bool = bool
    return True


def import_mxnet():
    """``(mxnet, gluonnlp)``, imported after :func:`numpy_shim`; a clear error when absent."""
    numpy_shim()
    import torch  # noqa: F401  torch's CUDA libraries (libnccl.so.2) load first: environment.yml
    try:
        mx = importlib.import_module("mxnet")
        nlp = importlib.import_module("gluonnlp")
    except ImportError as e:
        raise MXNetUnavailable(f"engine 'mx' needs MXNet 1.9.1 and GluonNLP 0.10.0 ({e}): "
                               f"{INSTALL}") from None
    except OSError as e:  # e.g. mxnet-cu102 without the CUDA 10.2 libraries it loads
        raise MXNetUnavailable(f"engine 'mx': MXNet is installed but cannot load ({e}); on a GPU "
                               "machine mxnet-cu102 needs CUDA 10.2's cudart, cuBLAS 10, cuDNN 8 and "
                               "NCCL 2 (conda env create -f environment.yml)") from None
    if not mx.__version__.startswith("1."):
        raise MXNetUnavailable(f"engine 'mx' is the MXNet 1.x recipe; mxnet {mx.__version__} is "
                               f"installed: {INSTALL}")
    return mx, nlp


def available() -> bool:
    try:
        import_mxnet()
    except MXNetUnavailable:
        return False
    return True
