from __future__ import annotations

from pathlib import Path

import pytest

from tests.train._data import prepared_data


@pytest.fixture
def data_dir(shared_data: Path, tmp_path: Path) -> Path:
    """A prepared folder (tokenizer + shards) of real chitchat and SGD dialogues."""
    return prepared_data(shared_data, tmp_path / "data")
