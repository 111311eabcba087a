import json

import pytest

from bertg4.config import PRESETS, BertConfig, ConfigError, get_config


def test_presets_and_aliases():
    base = get_config("bert_12_768_12")
    assert (base.num_layers, base.hidden_size, base.num_heads, base.intermediate_size) == (12, 768, 12, 3072)
    assert get_config("bert-large") is PRESETS["bert_24_1024_16"]
    assert get_config("bert-large").head_dim == 64
    assert get_config("minilm").head_dim == 32


def test_flops_bert_base_seq128():
    # 12 layers x 128 tokens x ~14.5 MFLOP per token per layer = ~22.4 GFLOP per sequence
    gflop = get_config("bert_12_768_12").flops_per_sequence(128) / 1e9
    assert 22.0 < gflop < 22.8


def test_from_hf_json_matches_embedded(embedded, tmp_path):
    cfg = embedded.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (6, 384, 12, 1536)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg.to_hf_dict()))
    again = BertConfig.from_json(p)
    assert again.to_hf_dict() == cfg.to_hf_dict()


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, "model_type 'gpt2'"),
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"num_attention_heads": 5}, "not divisible"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
])
def test_other_architectures_are_refused(change, message, tmp_path):
    d = get_config("bert_12_768_12").to_hf_dict()
    d.update(change)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=message):
        BertConfig.from_json(p)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown config 'bert_99'"):
        get_config("bert_99")
