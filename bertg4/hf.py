"""The ``transformers`` reference engine (``engine="hf"``): the yardstick for parity and speed.

Builds ``transformers.BertModel`` (and its task heads) from the same canonical
weights the other engines load, and runs it through the same predictor interface.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Checkpoint
from .pt.engine import TORCH_DTYPES, TorchPredictor, resolve_device
from .recipe import NotApplicable, Recipe, get_recipe
from .tasks import Task, get_task
from .text import Tokenizer


def reference_bert(checkpoint: Checkpoint, attn_implementation: str = "sdpa"):
    """``transformers.BertModel`` (no dropout, eval mode) holding the checkpoint's backbone."""
    import transformers
    cfg = transformers.BertConfig(**checkpoint.config.to_hf_dict(),
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = attn_implementation
    w = checkpoint.weights
    model = transformers.BertModel(cfg, add_pooling_layer="pooler.dense.weight" in w)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()
             if not k.startswith(("classifier.", "qa_outputs."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"transformers BertModel: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


class HFModule(nn.Module):
    """(input_ids, token_types, valid_length) -> the task output, on a transformers BERT."""

    def __init__(self, checkpoint: Checkpoint, task: Task, num_labels: int | None,
                 attn_implementation: str = "sdpa"):
        super().__init__()
        self.kind = task.kind
        self.bert = reference_bert(checkpoint, attn_implementation)
        w, hidden = checkpoint.weights, checkpoint.config.hidden_size
        self.head = None
        if task.kind in ("classification", "regression", "qa"):
            name = task.head
            out = (num_labels or task.num_labels) if task.head == "classifier" else 2
            self.head = nn.Linear(hidden, out)
            self.head.weight.data = torch.from_numpy(np.ascontiguousarray(w[f"{name}.weight"]))
            self.head.bias.data = torch.from_numpy(np.ascontiguousarray(w[f"{name}.bias"]))

    def forward(self, input_ids, token_types, valid_length):
        mask = (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
                < valid_length[:, None]).long()
        out = self.bert(input_ids=input_ids, token_type_ids=token_types, attention_mask=mask)
        seq = out.last_hidden_state
        if self.kind in ("classification", "regression"):
            return self.head(out.pooler_output)
        if self.kind == "qa":
            return self.head(seq)
        if self.kind == "embedding":
            m = mask.to(seq.dtype)[..., None]
            return F.normalize((seq * m).sum(1) / m.sum(1), p=2.0, dim=-1)
        return seq, out.pooler_output


def build(ckpt: Checkpoint, task="embedding", recipe: str | Recipe = "baseline", device="cpu",
          seq_length=128, tokenizer: Tokenizer | None = None, num_labels=None) -> TorchPredictor:
    """The reference as shipped: a recipe's dtype applies, and its attention picks transformers'
    ``eager`` (``naive``) or ``sdpa`` implementation; any other switch is not applicable."""
    task, recipe = get_task(task), get_recipe(recipe)
    others = {k: v for k, v in recipe.switches().items() if k not in ("dtype", "attention")}
    if recipe.attention == "interleaved" or others:
        raise NotApplicable(f"recipe {recipe.name}: the transformers reference runs as shipped; "
                            f"only dtype and attention naive/sdpa apply, not {others or 'interleaved'}")
    attn_implementation = "sdpa" if recipe.attention == "sdpa" else "eager"
    dev = resolve_device(device)
    if task.kind in ("classification", "regression"):
        num_labels = ckpt.num_labels() or num_labels or task.num_labels
    module = HFModule(ckpt, task, num_labels, attn_implementation)
    module = module.to(dev, TORCH_DTYPES[recipe.dtype]).eval()
    return TorchPredictor(module, config=ckpt.config, task=task, recipe=recipe, device=dev,
                          tokenizer=tokenizer, seq_length=seq_length, source=ckpt.source,
                          notes=ckpt.notes, engine="hf", vocab=ckpt.vocab,
                          lowercase=ckpt.do_lower_case)
