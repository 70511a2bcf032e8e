"""The pool recipe's own decisions that need no model: when to tell the user the pool looks off-domain."""

from __future__ import annotations

from convssl.downstream.pool_recipe import MIN_IN_DOMAIN_AGREEMENT, off_domain_warning


def _round(agreement: float | None) -> dict:
    return {"round": 1, "kept": 0, "pool": 100, "kept_fraction": agreement or 0.8,
            "teacher_propagation_agreement": agreement}


def test_little_agreement_in_round_one_warns_with_the_share_and_what_to_do():
    warning = off_domain_warning([_round(0.2), _round(0.9)])
    assert warning is not None
    assert "agreed on only 20% of the unlabeled pool" in warning and "another domain" in warning
    assert "out-of-scope threshold" in warning and "docs/ssl_recipe.md" in warning


def test_in_domain_pools_and_runs_without_agreement_rounds_do_not_warn():
    assert off_domain_warning([_round(0.84), _round(0.2)]) is None  # only round 1 speaks for the pool
    assert off_domain_warning([_round(MIN_IN_DOMAIN_AGREEMENT)]) is None
    assert off_domain_warning([_round(None)]) is None  # `selection: confident` keeps a fixed share
    assert off_domain_warning([]) is None  # no pool
