from dataclasses import dataclass, field
from typing import Annotated

import pytest

from convssl.config import (
    ConfigError,
    Fraction,
    PositiveInt,
    Range,
    check_values,
    config_help,
    field_docs,
    load_config,
    save_config,
)


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
    assert "  steps (int, default 10)\n      Optimizer steps." in text
    assert "  optim.lr (float, default 0.001)" in text
    assert "  optim (section)\n      How the optimiser steps.\n  optim.lr" in text  # the class docstring, once


@dataclass
class Ranged:
    epochs: PositiveInt = 3
    smoothing: Annotated[float, Range("[0, 1)")] = 0.1
    share: Fraction | None = None
    shots: list[PositiveInt] = field(default_factory=lambda: [1, 5])


@pytest.mark.parametrize("override, error", [
    ("epochs=0", "command line: epochs: must be > 0, got 0"),
    ("smoothing=1", "command line: smoothing: must be in [0, 1), got 1.0"),
    ("share=-0.5", "command line: share: must be in [0, 1], got -0.5"),
    ("shots=5,0", "command line: shots[1]: must be > 0, got 0"),
])
def test_a_number_out_of_its_range_is_one_line_naming_key_rule_and_value(override, error):
    with pytest.raises(ConfigError) as exc:
        load_config(Ranged, None, [override])
    assert str(exc.value) == error


def test_ranges_hold_at_their_edges_and_show_in_help_and_for_configs_built_in_code(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("smoothing: 0.0\nshare: 1\n")
    assert load_config(Ranged, path, ["epochs=1"]).share == 1.0
    path.write_text("smoothing: 1.0\n")
    with pytest.raises(ConfigError, match=f"^{path}.smoothing: must be in"):  # blamed on the file
        load_config(Ranged, path)
    text = config_help(Ranged)
    assert "  epochs (int > 0, default 3)" in text and "  smoothing (float in [0, 1), default 0.1)" in text
    assert "  share (float in [0, 1] | None)" in text and "  shots (list[int > 0], default [1, 5])" in text
    check_values(Ranged())
    with pytest.raises(ConfigError, match="^epochs: must be > 0, got -2$"):
        check_values(Ranged(epochs=-2))


def test_a_malformed_range_fails_where_it_is_written():
    with pytest.raises((ValueError, KeyError)):
        Range("=> 1")


def test_a_mistyped_choice_in_a_list_names_its_place_and_the_closest_choice(capsys):
    from convssl.cli import main

    assert main(["evaluate", "--model", "m", "--task", "intent:x", "--modes", "probe,knnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convssl evaluate: error: command line: intent.modes[1]: 'knnn' is not one of [")
    assert err.endswith("; did you mean knn?") and "\n" not in err
