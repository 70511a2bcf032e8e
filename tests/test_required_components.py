"""A missing component skips its tests, unless the machine is declared to have it (CI): then they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, require: str) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_needs_the_data(shared_data):\n    assert shared_data.exists()\n", encoding="utf-8")
    env = {**os.environ, "CONVSSL_SHARED_DATA": str(tmp_path / "nowhere"), "CONVSSL_REQUIRE": require,
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-rs", str(probe)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_missing_shared_data_skips_by_default_and_fails_where_required(tmp_path):
    skipped = _pytest(tmp_path, "")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "shared data not found" in skipped.stdout
    failed = _pytest(tmp_path, "shared_data,chromium")
    assert failed.returncode != 0 and "CONVSSL_REQUIRE says this machine has shared_data" in failed.stdout
