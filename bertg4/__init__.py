"""bertg4: serve BERT fast and cheaply -- the G4 recipe, reproduced and measured.

Public API (the notebooks rely on it)::

    import bertg4
    p = bertg4.load("embedded", task="SST", engine="pt", device="cpu")
    p.predict(["a gripping, funny film"])          # labels
    batch = p.featurize(["..."]); p(batch)         # raw logits
"""
from .api import load
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .config import BertConfig, ConfigError, get_config
from .recipe import Recipe, get_recipe
from .tasks import Task, get_task
from .text import Batch, TruncationWarning, Tokenizer

__version__ = "0.1.0"

__all__ = ["load", "Checkpoint", "CheckpointError", "load_checkpoint", "BertConfig", "ConfigError",
           "get_config", "Recipe", "get_recipe", "Task", "get_task", "Batch", "Tokenizer",
           "TruncationWarning", "__version__"]
