"""Progress bars, the way Hugging Face tools show them (tqdm, to stderr, gone when done)."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", *, enabled: bool = True,
                 leave: bool = False, initial: int = 0, mininterval: float = 0.5) -> Any:
    """A tqdm bar; `enabled=False` gives one that prints nothing (same interface)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=leave, initial=initial,
                mininterval=mininterval, dynamic_ncols=True)
