"""Run folders: every command that produces something writes config, log and outputs in one place."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convssl.config import save_config

LOG = logging.getLogger("convssl")
# Called with each run folder a command creates (experiment tracking records what lands there).
RUN_DIR_LISTENERS: list[Callable[[Path], None]] = []


def prepare_run_dir(out: str | Path, config: Any | None = None, log_name: str = "run.log") -> Path:
    """Create the run folder, write the resolved config beside it and send logs to a file there."""
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        save_config(config, run_dir / "config.yaml")
    attach_file_log(run_dir / log_name)
    for listener in RUN_DIR_LISTENERS:
        listener(run_dir)
    return run_dir


def attach_file_log(path: Path) -> None:
    root = logging.getLogger("convssl")
    root.setLevel(logging.INFO)
    target = str(path.resolve())
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            return
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON via a temporary file and rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
