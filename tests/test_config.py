from dataclasses import dataclass, field

import pytest

from convssl.config import ConfigError, config_help, field_docs, load_config, save_config


@dataclass
class Optim:
    """How the optimiser steps.

    Only this first paragraph describes the section in `--help`."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Example:
    name: str = "run"
    steps: int = 10
    """Optimizer steps."""
    bf16: bool = True
    tags: list[str] = field(default_factory=list)
    init_from: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load_config(Example, path, ["optim.lr=3e-4", "bf16=false", "tags=a,b"])
    assert cfg.steps == 20
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.betas == [0.9, 0.999]
    assert cfg.bf16 is False
    assert cfg.tags == ["a", "b"]


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(Example, None, ["init_from=/models/x", "steps=7"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(Example, tmp_path / "config.yaml") == cfg


def test_unknown_field_and_bad_type_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^command line: stepz=3: unknown key stepz; did you mean steps\?"):
        load_config(Example, None, ["stepz=3"])
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config(Example, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Example, tmp_path / "missing.yaml")


def test_an_unknown_key_is_blamed_where_it_was_written(tmp_path):
    """A typo on the command line blames the command line, one in the file blames the file."""
    good = tmp_path / "good.yaml"
    good.write_text("steps: 20\n")
    with pytest.raises(ConfigError, match=r"^command line: optim.lrr=1: unknown key optim.lrr; did you mean lr\?"):
        load_config(Example, good, ["optim.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepss: 20\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown field\(s\) \['stepss'\]; did you mean steps\?"):
        load_config(Example, bad, ["steps=3"])


def test_a_mistyped_preset_gets_a_suggestion():
    with pytest.raises(ConfigError, match="pretrain_mini_mlmm does not exist and is no preset; did you mean pretrain_mini_mlm"):
        load_config(Example, "pretrain_mini_mlmm")


def test_field_descriptions_come_from_attribute_docstrings():
    assert field_docs(Example) == {"steps": "Optimizer steps."}
    text = config_help(Example)
    assert "  steps (int = 10)\n      Optimizer steps." in text
    assert "  optim.lr (float = 0.001)" in text
    assert "  optim (section)\n      How the optimiser steps.\n  optim.lr" in text  # the class docstring, once
