"""Fixtures: tokenizers trained on real chitchat text and real dialogues tokenised with them."""

from __future__ import annotations

import pytest

from tests.pretext._data import chitchat_dialogues, sgd_dialogues, tokenize, trained_tokenizer


@pytest.fixture(scope="session")
def wp_tok():
    return trained_tokenizer("wordpiece")


@pytest.fixture(scope="session")
def bpe_tok():
    return trained_tokenizer("bpe")


@pytest.fixture(scope="session")
def chats(wp_tok):
    """150 real peer chats (roles A/B), WordPiece ids."""
    return tokenize(wp_tok, chitchat_dialogues(150, start=2000))


@pytest.fixture(scope="session")
def chats_bpe(bpe_tok):
    return tokenize(bpe_tok, chitchat_dialogues(150, start=2000))


@pytest.fixture(scope="session")
def sgd(wp_tok, shared_data):
    """60 real task-oriented dialogues (roles user/agent), WordPiece ids."""
    return tokenize(wp_tok, sgd_dialogues(shared_data, 60), prefix="sgd")
