"""The at-chance rule every report uses: a score within noise of guessing is flagged, others not."""

from __future__ import annotations

from convssl.utils.chance import chance_accuracy, chance_warning, near_chance


def test_chance_is_the_commonest_label_share():
    assert chance_accuracy(["a", "b", "c", "d"]) == 0.25
    assert chance_accuracy(["a", "a", "a", "b"]) == 0.75
    assert chance_accuracy([]) == 0.0


def test_the_readme_smoke_run_numbers_are_flagged_and_real_results_are_not():
    """BANKING77 test: 3,080 texts, 77 intents. The 50-step MLM smoke run gave 1.4% (probe) and
    1.3% (fine-tune); the untrained mini 41.2%, the 50-step views run 56.6%."""
    chance, n = 1 / 77, 3080
    assert near_chance(0.014, chance, n) and near_chance(0.013, chance, n)
    assert not near_chance(0.412, chance, n) and not near_chance(0.05, chance, n)


def test_small_test_sets_need_a_clearer_margin():
    assert near_chance(0.15, 0.10, 100)  # 15 of 100 right at 10-way: within noise
    assert not near_chance(0.15, 0.10, 10_000)


def test_too_few_examples_to_tell_is_not_called_chance():
    # 3 test texts at 3 intents: 3 of 3 right was flagged as "learned nothing"
    assert not near_chance(1.0, 1 / 3, 3) and not near_chance(1 / 3, 1 / 3, 3)
    assert near_chance(0.36, 1 / 3, 300)  # with enough texts the rule speaks again


def test_warning_names_the_score_and_the_chance_level():
    line = chance_warning("test accuracy", 0.014, 1 / 77, 3080, "train longer")
    assert line is not None
    assert "test accuracy 1.4%" in line and "chance level (1.3%" in line and line.endswith("train longer")
    assert chance_warning("test accuracy", 0.9, 1 / 77, 3080) is None
