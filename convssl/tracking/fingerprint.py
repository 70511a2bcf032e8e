"""Content fingerprints of data folders: the same data gives the same digest wherever it is used.

The digest covers file names (relative to the folder) and contents, so a copy of a prepared folder
on a colleague's machine matches, while any edited file changes it. Logs, run bookkeeping and
hidden files are left out: they change without the data changing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IGNORED_SUFFIXES = {".log", ".tmp", ".pyc"}
IGNORED_NAMES = {"tracking.json", "config.yaml", "__pycache__"}
CHUNK = 1 << 20


def _data_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part in IGNORED_NAMES for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in IGNORED_SUFFIXES:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def fingerprint(path: str | Path) -> str:
    """sha256 over (relative name, size, content) of every data file; 16 hex digits."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in _data_files(root):
        name = file.name if root.is_file() else file.relative_to(root).as_posix()
        digest.update(f"{name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()[:16]


def describe(path: str | Path) -> dict[str, int]:
    files = _data_files(Path(path))
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}
