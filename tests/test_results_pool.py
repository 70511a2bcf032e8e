"""The targets rows that scripts/results_pool.py computes from finished runs' metrics."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import results_pool  # noqa: E402  (a script beside results.py, not a package module)


def _run(accuracy: float) -> dict:
    return {"test": {"accuracy": accuracy}}


def test_full_banking77_row_averages_the_seeds_it_finds_and_says_met_only_at_the_target():
    runs = {results_pool.full_b77_name(0): _run(0.941), results_pool.full_b77_name(1): _run(0.942),
            results_pool.full_b77_name(2): _run(0.933), "b77-10shot-pool-seed0": _run(0.5)}
    row = results_pool.full_b77_target_row(runs)
    assert row.startswith("| BANKING77 full >= 94.5 | 93.9 ")
    assert "seeds 0, 1, 2: 94.1 / 94.2 / 93.3" in row and row.endswith("| **not met** |")

    met = results_pool.full_b77_target_row({results_pool.full_b77_name(1): _run(0.946)})
    assert "| 94.6 " in met and "seeds 1: 94.6" in met and met.endswith("| met |")


def test_target_rows_without_their_runs_say_so_and_claim_no_number():
    row = results_pool.full_b77_target_row({"c150-full-e4-oe": _run(0.97)})
    assert "not run here (stage `full-b77`)" in row and row.endswith("| not run |")
    oos = results_pool.oos_target_row({results_pool.full_b77_name(0): _run(0.94)})
    assert "not run here (stage `full-oos`)" in oos and oos.endswith("| not run |")
