"""BERT in plain PyTorch: the encoder, pooler and the task heads bertg4 serves.

Inputs are GluonNLP's three tensors -- ``input_ids`` and ``token_types``
``(batch, seq)`` and ``valid_length`` ``(batch,)`` -- so the attention mask is
derived inside the graph from one integer per row, never passed as a float mask.

**Packed** (no padding in the token-wise layers): every task module also has
``forward_packed(input_ids, token_types, valid_length, token_index)``, where
``token_index`` ``(total_tokens,)`` says where each valid token sits in the flattened
``(batch, seq)`` grid (row-major, rows in order; FasterTransformer's "effective
transformer"). Embeddings (positions restart per row), every Linear, bias+GELU,
LayerNorm and residual run on ``(total_tokens, hidden)``; attention re-pads per sequence
(see :mod:`bertg4.pt.attention`). :class:`Packed` makes that method a module's forward,
sharing the weights, for tracing, export and CUDA graphs.
"""
from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import BertConfig
from .attention import ATTENTION, grid_map, train_dropout as _drop
from .numerics import LayerNorm


class Layer(nn.Module):
    """Post-LayerNorm transformer layer: attention, add & norm, FFN (GELU), add & norm.

    ``dropout`` (BERT's ``hidden_dropout_prob``) acts on the attention and FFN outputs before
    each residual add, ``attention_dropout`` on the attention probabilities; both only in
    training mode (``bertg4 finetune``)."""

    def __init__(self, cfg: BertConfig, attention: str = "naive", safe: bool = True,
                 dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        h, i, eps = cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps
        self.attn = ATTENTION[attention](h, cfg.num_heads, safe, attention_dropout,
                                         max_len=cfg.max_position_embeddings)
        self.attn_ln = LayerNorm(h, eps, safe)
        self.ffn1, self.ffn2 = nn.Linear(h, i), nn.Linear(i, h)
        self.ffn_ln = LayerNorm(h, eps, safe)
        self.dropout = dropout

    def forward(self, x, valid_length, key_mask, pack=None):
        x = self.attn_ln(x + _drop(self, self.attn(x, valid_length, key_mask, pack), self.dropout))
        return self.ffn_ln(x + _drop(self, self.ffn2(F.gelu(self.ffn1(x))), self.dropout))


class Bert(nn.Module):
    """Embeddings + encoder + (optional) pooler. Returns (sequence_output, pooled_output).

    ``attention`` picks the layout (see :mod:`bertg4.pt.attention`); ``safe`` whether fp16
    softmax/LayerNorm reduce in fp32; ``dropout``/``attention_dropout`` are for fine-tuning
    (see :class:`Layer`; ``dropout`` also acts on the embeddings). Inputs and outputs are
    batch-first whatever the layout inside: the interleaved layout transposes once after the
    embeddings and once at the end, as GluonNLP's BERT does.
    """

    def __init__(self, cfg: BertConfig, pooler: bool = True, attention: str = "naive",
                 safe: bool = True, dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"unknown attention {attention!r}: choose one of {', '.join(ATTENTION)}")
        self.cfg = cfg
        self.seq_first = ATTENTION[attention].layout == "seq_first"
        h = cfg.hidden_size
        self.word_embed = nn.Embedding(cfg.vocab_size, h)
        self.position_embed = nn.Embedding(cfg.max_position_embeddings, h)
        self.token_type_embed = nn.Embedding(cfg.type_vocab_size, h)
        self.embed_ln = LayerNorm(h, cfg.layer_norm_eps, safe)
        self.layers = nn.ModuleList(Layer(cfg, attention, safe, dropout, attention_dropout)
                                    for _ in range(cfg.num_layers))
        self.dropout = dropout
        self.pooler = nn.Linear(h, h) if pooler else None

    def embed(self, input_ids, token_types):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embed(input_ids) + self.token_type_embed(token_types) + self.position_embed(positions)
        return _drop(self, self.embed_ln(x), self.dropout)

    def forward(self, input_ids, token_types, valid_length, all_layers: bool = False):
        key_mask = None  # the interleaved attention masks by valid_length inside its softmax
        if not self.seq_first:
            key_mask = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < valid_length[:, None]
        x = self.embed(input_ids, token_types)
        if self.seq_first:
            x = x.transpose(0, 1).contiguous()
        hidden = [x]
        for layer in self.layers:
            x = layer(x, valid_length, key_mask)
            if all_layers:
                hidden.append(x)
        if self.seq_first:
            x = x.transpose(0, 1)
            if all_layers:
                hidden = [t.transpose(0, 1) for t in hidden]
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        if all_layers:
            return hidden, pooled
        return x, pooled

    def forward_packed(self, input_ids, token_types, valid_length, token_index):
        """Packed: ``(tokens, hidden)`` sequence output (rows' tokens in order) and pooled [CLS]."""
        rows, length = input_ids.shape[0], input_ids.shape[1]
        positions = token_index % length
        x = self.word_embed(input_ids.reshape(-1).index_select(0, token_index)) \
            + self.token_type_embed(token_types.reshape(-1).index_select(0, token_index)) \
            + self.position_embed(positions)
        x = self.embed_ln(x)
        if self.seq_first:  # the interleaved attention's grid is (seq, batch)
            index = positions * rows + token_index // length
            pack = (index, length, rows, grid_map(index, rows * length))
            key_mask = None
        else:
            pack = (token_index, rows, length, grid_map(token_index, rows * length))
            key_mask = torch.arange(length, device=input_ids.device)[None, :] < valid_length[:, None]
        for layer in self.layers:
            x = layer(x, valid_length, key_mask, pack)
        pooled = None
        if self.pooler is not None:  # each row's [CLS] is its first token
            starts = torch.cumsum(valid_length, 0) - valid_length
            pooled = torch.tanh(self.pooler(x.index_select(0, starts)))
        return x, pooled


class ForClassification(nn.Module):
    """Pooled [CLS] -> (dropout) -> Linear -> logits ``(batch, num_labels)`` (GluonNLP's
    BERTClassifier)."""

    def __init__(self, cfg: BertConfig, num_labels: int, **options):
        super().__init__()
        self.bert = Bert(cfg, pooler=True, **options)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.dropout = options.get("dropout", 0.0)

    def forward(self, input_ids, token_types, valid_length):
        pooled = self.bert(input_ids, token_types, valid_length)[1]
        return self.classifier(_drop(self, pooled, self.dropout))

    def forward_packed(self, input_ids, token_types, valid_length, token_index):
        return self.classifier(self.bert.forward_packed(input_ids, token_types, valid_length, token_index)[1])


class ForQuestionAnswering(nn.Module):
    """Sequence output -> Linear(2): start/end logits ``(batch, seq, 2)`` (GluonNLP's BertForQA)."""

    def __init__(self, cfg: BertConfig, **options):
        super().__init__()
        self.bert = Bert(cfg, pooler=False, **options)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)

    def forward(self, input_ids, token_types, valid_length):
        return self.qa_outputs(self.bert(input_ids, token_types, valid_length)[0])

    def forward_packed(self, input_ids, token_types, valid_length, token_index):
        """Start/end logits of the valid tokens only, ``(tokens, 2)``."""
        return self.qa_outputs(self.bert.forward_packed(input_ids, token_types, valid_length, token_index)[0])


class ForEmbedding(nn.Module):
    """Mean of the valid tokens' outputs, L2-normalised (sentence-transformers' pooling)."""

    def __init__(self, cfg: BertConfig, **options):
        super().__init__()
        self.bert = Bert(cfg, pooler=False, **options)

    def forward(self, input_ids, token_types, valid_length):
        return self.pool(self.bert(input_ids, token_types, valid_length)[0], valid_length)

    def forward_packed(self, input_ids, token_types, valid_length, token_index):
        """The same pooling as :meth:`forward` on the tokens put back in their grid (zeros elsewhere)."""
        tokens = self.bert.forward_packed(input_ids, token_types, valid_length, token_index)[0]
        rows, length = input_ids.shape[0], input_ids.shape[1]
        grid = tokens.new_zeros(rows * length, tokens.shape[-1]).index_copy(0, token_index, tokens)
        return self.pool(grid.view(rows, length, -1), valid_length)

    @staticmethod
    def pool(seq, valid_length):
        keep = torch.arange(seq.shape[1], device=seq.device)[None, :, None] < valid_length[:, None, None]
        mean = torch.where(keep, seq, 0).sum(1) / valid_length[:, None].to(seq.dtype)
        return F.normalize(mean, p=2.0, dim=-1)


class Packed(nn.Module):
    """``module.forward_packed`` as a forward, on the same weights (``module`` is shared)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        if not hasattr(module, "forward_packed"):
            raise TypeError(f"{type(module).__name__} has no packed forward")
        self.inner = module

    def forward(self, input_ids, token_types, valid_length, token_index):
        return self.inner.forward_packed(input_ids, token_types, valid_length, token_index)


class ForEncoding(nn.Module):
    """The bare encoder: (sequence_output, pooled_output)."""

    def __init__(self, cfg: BertConfig, pooler: bool = True, **options):
        super().__init__()
        self.bert = Bert(cfg, pooler=pooler, **options)

    def forward(self, input_ids, token_types, valid_length):
        return self.bert(input_ids, token_types, valid_length)


# canonical (transformers-style) names -> this module's names
_RULES = [
    (r"embeddings\.word_embeddings\.", "word_embed."),
    (r"embeddings\.position_embeddings\.", "position_embed."),
    (r"embeddings\.token_type_embeddings\.", "token_type_embed."),
    (r"embeddings\.LayerNorm\.", "embed_ln."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"layers.\1.attn.\2."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn.out."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.attn_ln."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.ffn1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.ffn2."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ffn_ln."),
    (r"pooler\.dense\.", "pooler."),
]


def torch_name(canonical: str) -> str:
    if canonical.startswith(("classifier.", "qa_outputs.")):
        return canonical
    for pattern, repl in _RULES:
        new, n = re.subn("^" + pattern, repl, canonical)
        if n:
            return "bert." + new
    raise KeyError(f"no PyTorch parameter for canonical tensor {canonical!r}")


def load_weights(module: nn.Module, weights: dict[str, np.ndarray]) -> nn.Module:
    """Copy canonical weights into ``module``; every parameter must be covered exactly once."""
    state = {}
    own = dict(module.state_dict())
    for name, arr in weights.items():
        tname = torch_name(name)
        if tname not in own:
            continue  # e.g. a pooler or head this task does not use
        if tuple(own[tname].shape) != tuple(arr.shape):
            raise ValueError(f"{name}: shape {tuple(arr.shape)} does not fit {tname} "
                             f"{tuple(own[tname].shape)}")
        state[tname] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"checkpoint provides no values for {missing[:5]}")
    module.load_state_dict(state, strict=True)
    return module
