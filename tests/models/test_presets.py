"""Size presets and model configs."""

from __future__ import annotations

import pytest

from convssl.config import load_config
from convssl.models import ModelConfig, available_presets, build_pretext_model, load_preset
from convssl.models.presets import ModelConfigError


@pytest.mark.parametrize(
    ("preset", "shape"),
    [
        ("tiny", (2, 64, 2, 128)),
        ("mini", (4, 256, 4, 1024)),
        ("small", (6, 384, 6, 1536)),
        ("base", (12, 768, 12, 3072)),
    ],
)
def test_presets_have_the_documented_sizes(preset, shape):
    sizes = load_preset(preset)
    assert (
        sizes["num_layers"],
        sizes["hidden_size"],
        sizes["num_heads"],
        sizes["intermediate_size"],
    ) == shape


def test_every_preset_file_loads():
    assert {"tiny", "mini", "small", "base"} <= set(available_presets())
    for name in available_presets():
        load_preset(name)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_tiny_builds_each_arch_with_the_tokenizer_vocab(wp_tok, arch):
    model = build_pretext_model(ModelConfig(preset="tiny", arch=arch), wp_tok, [])
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 64, 2)
    assert model.word_embeddings().weight.shape == (len(wp_tok), 64)
    assert model.is_decoder == (arch != "bert")


def test_overrides_change_sizes_and_hf_fields(wp_tok):
    cfg = ModelConfig(preset="tiny", overrides={"num_layers": 3, "layer_norm_eps": 1e-6}, dropout=0.0)
    model = build_pretext_model(cfg, wp_tok, [])
    assert model.config.num_hidden_layers == 3 and model.config.layer_norm_eps == 1e-6
    assert model.config.hidden_dropout_prob == 0.0


def test_model_config_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("preset: small\narch: gpt2\noverrides: {num_layers: 3}\n")
    cfg = load_config(ModelConfig, path, ["dropout=0.05"])
    assert (cfg.preset, cfg.arch, cfg.overrides, cfg.dropout) == ("small", "gpt2", {"num_layers": 3}, 0.05)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ModelConfig(preset="huge"), "unknown model preset 'huge'"),
        (ModelConfig(preset="tiny", arch="t5"), "model.arch must be one of"),
        (ModelConfig(preset="tiny", attention="flash"), "model.attention"),
        (ModelConfig(preset="tiny", overrides={"num_heads": 3}), "not divisible"),
        (ModelConfig(preset="tiny", overrides={"no_such_field": 1}), "overrides.no_such_field"),
    ],
)
def test_bad_model_configs_say_what_is_wrong(wp_tok, cfg, message):
    with pytest.raises(ModelConfigError, match=message):
        build_pretext_model(cfg, wp_tok, [])
