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


def test_equal_shares_keep_a_small_source_whole_and_split_the_rest():
    from convssl.downstream.pool_recipe import equal_shares

    assert equal_shares({0: 9_000, 1: 128_000}, 30_000) == {0: 9_000, 1: 21_000}
    assert equal_shares({0: 20_000, 1: 20_000, 2: 5}, 30_001) == {2: 5, 0: 14_998, 1: 14_998}
    assert equal_shares({0: 3, 1: 4}, 10) == {0: 3, 1: 4}  # under the limit: everything
    assert sum(equal_shares({0: 50, 1: 60, 2: 70}, 100).values()) == 100


def test_a_large_second_source_cannot_crowd_out_the_first():
    from convssl.downstream.pool_recipe import sample_pool

    own = [f"own {i}" for i in range(300)]
    chat = [f"chat {i}" for i in range(3_000)]
    drawn = sample_pool(own + chat, 1_000, seed=0, origins=[0] * len(own) + [1] * len(chat))
    assert len(drawn) == 1_000 and set(own) <= set(drawn)  # all 300 own texts, 700 of the chat
    assert drawn == sorted(drawn, key=(own + chat).index)  # the pool's order is kept
    # one source (or none named): the plain seeded draw, as before sources were told apart
    plain = sample_pool(own + chat, 1_000, seed=0)
    assert plain == sample_pool(own + chat, 1_000, seed=0, origins=[0] * 3_300)
    assert sum(t.startswith("own") for t in plain) < 150
