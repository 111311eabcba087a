"""BertConfig: the shape of a BERT model, from a preset or a Hugging Face config.json."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass


class ConfigError(ValueError):
    """A configuration that does not describe a BERT encoder bertg4 can run."""


@dataclass(frozen=True)
class BertConfig:
    num_layers: int = 12
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    name: str = "custom"

    def __post_init__(self):
        for field in ("num_layers", "hidden_size", "num_heads", "intermediate_size",
                      "vocab_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"BertConfig.{field} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by "
                              f"num_heads {self.num_heads}")
        if self.hidden_act != "gelu":
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; bertg4 runs "
                              "BERT's exact (erf) GELU, hidden_act='gelu'")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def flops_per_sequence(self, seq_len: int) -> float:
        """Multiply-adds x2 of one forward pass of the encoder over one sequence.

        Counts the GEMMs (QKV, attention output, FFN: 2*(4h^2 + 2*h*i) per token)
        and the two attention batched GEMMs (2 * 2*L*h per token); pointwise ops
        are left out, as is customary.
        """
        h, i, L = self.hidden_size, self.intermediate_size, seq_len
        per_token = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * L * h
        return float(self.num_layers * L * per_token)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_hf_dict(self) -> dict:
        return {
            "model_type": "bert", "architectures": ["BertModel"],
            "num_hidden_layers": self.num_layers, "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_heads, "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size, "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act, "pad_token_id": 0,
        }

    @classmethod
    def from_hf_dict(cls, d: dict, name: str = "custom") -> "BertConfig":
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"config describes model_type {model_type!r}, not 'bert'; "
                              "bertg4 runs BERT encoders only")
        pos = d.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ConfigError(f"position_embedding_type {pos!r} is not supported (only 'absolute')")
        required = ["num_hidden_layers", "hidden_size", "num_attention_heads",
                    "intermediate_size", "vocab_size"]
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"config.json lacks {', '.join(missing)}")
        return cls(
            num_layers=d["num_hidden_layers"], hidden_size=d["hidden_size"],
            num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
            vocab_size=d["vocab_size"],
            max_position_embeddings=d.get("max_position_embeddings", 512),
            type_vocab_size=d.get("type_vocab_size", 2),
            layer_norm_eps=d.get("layer_norm_eps", 1e-12),
            hidden_act=d.get("hidden_act", "gelu"), name=name)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) or "custom"
        return cls.from_hf_dict(d, name=name)


PRESETS = {
    # GluonNLP's names for BERT-base and BERT-large (uncased vocabulary, 30522 tokens)
    "bert_12_768_12": BertConfig(12, 768, 12, 3072, name="bert_12_768_12"),
    "bert_24_1024_16": BertConfig(24, 1024, 16, 4096, name="bert_24_1024_16"),
    # the embedded checkpoint (sentence-transformers all-MiniLM-L6-v2)
    "minilm_6_384_12": BertConfig(6, 384, 12, 1536, name="minilm_6_384_12"),
}
ALIASES = {"bert-base": "bert_12_768_12", "bert-large": "bert_24_1024_16",
           "minilm": "minilm_6_384_12", "embedded": "minilm_6_384_12"}


def get_config(name_or_path: str | os.PathLike | BertConfig) -> BertConfig:
    """A preset by name (``bert_12_768_12``, ``bert-base``, ...) or a config.json path."""
    if isinstance(name_or_path, BertConfig):
        return name_or_path
    key = str(name_or_path)
    key = ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    if os.path.isdir(key):
        key = os.path.join(key, "config.json")
    if os.path.isfile(key):
        return BertConfig.from_json(key)
    raise ConfigError(f"unknown config {name_or_path!r}: expected one of "
                      f"{sorted(PRESETS) + sorted(ALIASES)} or a path to a config.json")
