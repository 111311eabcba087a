"""The PyTorch engine (``engine="pt"``): BERT on every modern NVIDIA GPU and on CPU."""
from .engine import TorchPredictor, build, load_exported

__all__ = ["TorchPredictor", "build", "load_exported"]
