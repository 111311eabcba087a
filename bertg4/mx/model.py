"""GluonNLP 0.10's BERT, built from bertg4's canonical weights.

The blocks are GluonNLP's own (``BERTEncoder``, ``BERTModel``, ``BERTClassifier``) plus
the SQuAD head of GluonNLP's ``finetune_squad.py`` (``BertForQA``: a ``span_classifier``
Dense on the sequence output), so the parameter names -- and the ``.params`` files -- are
the original scripts'. Weights are copied by mapping every GluonNLP parameter name to its
canonical name with :func:`bertg4.checkpoint.gluon_to_canonical`, the same table that
reads GluonNLP ``.params`` files, so there is one mapping in the project.

Attention: GluonNLP 0.10's ``DotProductSelfAttentionCell`` *is* the interleaved recipe (one
fused QKV FullyConnected, ``interleaved_matmul_selfatt_qk/valatt``, softmax masked by
``valid_length``); :class:`NaiveSelfAttentionCell` swaps in the pre-0.9 arithmetic (three
FullyConnected projections, head split by reshape/transpose, ``batch_dot``) on the same
parameters, so the ``baseline`` rung has a naive attention on this engine too.
"""
from __future__ import annotations

import math

import numpy as np

from ..checkpoint import Checkpoint, gluon_to_canonical
from ..config import BertConfig
from .compat import import_mxnet

mx, nlp = import_mxnet()
HybridBlock = mx.gluon.HybridBlock
nn = mx.gluon.nn


class NaiveSelfAttentionCell(nlp.model.bert.DotProductSelfAttentionCell):
    """Same parameters as GluonNLP 0.10's cell; separate Q/K/V GEMMs and ``batch_dot``."""

    def hybrid_forward(self, F, qkv, valid_len, query_bias, key_bias, value_bias,
                       query_weight, key_weight, value_weight):
        heads = self._num_heads
        x = F.transpose(qkv, axes=(1, 0, 2))  # (seq, batch, C) -> (batch, seq, C)

        def split_heads(weight, bias):
            y = F.FullyConnected(x, weight=weight, bias=bias, num_hidden=self.units, flatten=False)
            y = y.reshape(shape=(0, 0, heads, -1)).transpose(axes=(0, 2, 1, 3))
            return y.reshape(shape=(-1, 0, 0), reverse=True)  # (batch * heads, seq, head_dim)

        q = split_heads(query_weight, query_bias)
        k = split_heads(key_weight, key_bias)
        v = split_heads(value_weight, value_bias)
        scores = F.batch_dot(q, k, transpose_b=True) * (1.0 / math.sqrt(self.units // heads))
        if valid_len is not None:
            valid_len = F.broadcast_axis(F.expand_dims(valid_len, axis=1), axis=1, size=heads)
            valid_len = valid_len.reshape(shape=(-1, 0), reverse=True)
            weights = F.softmax(scores, length=valid_len, use_length=True, axis=-1)
        else:
            weights = F.softmax(scores, axis=-1)
        context = F.batch_dot(weights, v)  # (batch * heads, seq, head_dim)
        context = context.reshape(shape=(-1, heads, 0, 0), reverse=True).transpose(axes=(2, 0, 1, 3))
        context = context.reshape(shape=(0, 0, -1))  # (seq, batch, C)
        return context, weights.reshape(shape=(-1, heads, 0, 0), reverse=True)


class BertForQA(HybridBlock):
    """GluonNLP's SQuAD model (``scripts/bert/model/qa.py``): start/end logits ``(B, seq, 2)``."""

    def __init__(self, bert, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.bert = bert
        with self.name_scope():
            self.span_classifier = nn.Dense(units=2, flatten=False)

    def hybrid_forward(self, F, inputs, token_types, valid_length):  # noqa: D401
        return self.span_classifier(self.bert(inputs, token_types, valid_length))


class MeanPooled(HybridBlock):
    """Mean of the valid tokens' outputs, L2-normalised (sentence-transformers' pooling)."""

    def __init__(self, bert, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.bert = bert

    def hybrid_forward(self, F, inputs, token_types, valid_length):
        # pooled in float32 whatever the network's dtype: a 512-token sum can overflow fp16
        seq = F.cast(self.bert(inputs, token_types, valid_length), dtype="float32")  # (batch, seq, C)
        lengths = F.cast(valid_length, dtype="float32")
        masked = F.SequenceMask(seq, sequence_length=lengths, use_sequence_length=True, axis=1)
        mean = F.broadcast_div(F.sum(masked, axis=1), F.reshape(lengths, shape=(-1, 1)))
        return F.L2Normalization(mean, mode="instance", eps=1e-24)


class Encoding(HybridBlock):
    """The bare ``BERTModel``: ``(sequence_output, pooled_output)``."""

    def __init__(self, bert, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.bert = bert

    def hybrid_forward(self, F, inputs, token_types, valid_length):
        return self.bert(inputs, token_types, valid_length)


def bert_model(cfg: BertConfig, pooler: bool, attention: str = "interleaved"):
    """A GluonNLP ``BERTModel`` with this config (no dropout: inference)."""
    if attention not in ("naive", "interleaved"):
        raise ValueError(f"the mx engine has naive and interleaved attention, not {attention!r}")
    encoder = nlp.model.BERTEncoder(
        num_layers=cfg.num_layers, units=cfg.hidden_size, hidden_size=cfg.intermediate_size,
        max_length=cfg.max_position_embeddings, num_heads=cfg.num_heads, dropout=0.0,
        output_attention=False, output_all_encodings=False, layer_norm_eps=cfg.layer_norm_eps)
    if attention == "naive":
        for cell in encoder.transformer_cells:
            cell.attention_cell.__class__ = NaiveSelfAttentionCell
    return nlp.model.BERTModel(
        encoder, vocab_size=cfg.vocab_size, token_type_vocab_size=cfg.type_vocab_size,
        units=cfg.hidden_size, embed_size=cfg.hidden_size, use_pooler=pooler, use_decoder=False,
        use_classifier=False)


def task_block(cfg: BertConfig, kind: str, num_labels: int = 2, attention: str = "interleaved"):
    """The GluonNLP block for a task kind: classification/regression, qa, embedding or encoding."""
    if kind in ("classification", "regression"):
        return nlp.model.BERTClassifier(bert_model(cfg, True, attention), num_classes=num_labels,
                                        dropout=0.0)
    if kind == "qa":
        return BertForQA(bert_model(cfg, False, attention))
    if kind == "embedding":
        return MeanPooled(bert_model(cfg, False, attention))
    if kind == "encoding":
        return Encoding(bert_model(cfg, True, attention))
    raise ValueError(f"task kind {kind!r} has no GluonNLP block")


def load_weights(block, weights: dict[str, np.ndarray], ctx=None) -> None:
    """Copy canonical weights into ``block``; every parameter must get a value."""
    ctx = ctx or mx.cpu()
    params = block._collect_params_with_prefix()
    names = {}
    for name in params:  # one name at a time: GluonNLP name -> canonical name
        (canon,), _ = gluon_to_canonical({name: np.zeros(0)})
        names[name] = canon
    missing = [n for n, c in names.items() if c not in weights]
    if missing:
        raise ValueError(f"checkpoint provides no values for GluonNLP parameters {missing[:5]}")
    for name, param in params.items():
        arr = np.ascontiguousarray(weights[names[name]], dtype=np.float32)
        if param.shape and tuple(param.shape) != arr.shape and 0 not in param.shape:
            raise ValueError(f"{names[name]}: shape {arr.shape} does not fit GluonNLP's "
                             f"{name} {tuple(param.shape)}")
        param._shape = arr.shape
        param.initialize(ctx=ctx, force_reinit=True)
        param.set_data(mx.nd.array(arr, ctx=ctx))


def build_block(ckpt: Checkpoint, kind: str, num_labels: int = 2, attention: str = "interleaved",
                ctx=None):
    block = task_block(ckpt.config, kind, num_labels, attention)
    load_weights(block, ckpt.weights, ctx)
    return block
