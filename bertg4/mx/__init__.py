"""The MXNet 1.9 + GluonNLP 0.10 engine (``engine="mx"``): the original recipe.

Optional: ``pip install -e '.[mxnet]'`` (CPU) or ``'.[mxnet-cu102]'`` (a T4 with CUDA 10.2).
Importing this package does not import MXNet; :func:`build` and :func:`load_exported` do,
through :mod:`bertg4.mx.compat` (the numpy shim), and raise :class:`MXNetUnavailable`
with the install command when it is missing.
"""
from .compat import INSTALL, MXNetUnavailable, available, import_mxnet


def build(*args, **kwargs):
    """:func:`bertg4.mx.engine.build`: a predictor from canonical weights."""
    from .engine import build as _build
    return _build(*args, **kwargs)


def load_exported(path: str, device: str | None = None):
    """:func:`bertg4.mx.engine.load_exported`: reload a symbol + params export."""
    from .engine import load_exported as _load
    return _load(path, device)


__all__ = ["INSTALL", "MXNetUnavailable", "available", "import_mxnet", "build", "load_exported"]
