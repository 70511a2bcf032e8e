"""Atomic checkpoints that hold everything needed to continue a run bit for bit.

A checkpoint is first written to a hidden temporary folder and then renamed into place, so a run
killed at any moment leaves either a complete `step-N/` folder or none. Each checkpoint is a
Hugging Face folder (the model for `AutoModel`) plus the trainer state: the full pretext model
(with heads) in safetensors, the optimizer state, the schedule, the step, the data position and
every random generator (python, numpy, torch CPU and CUDA, per rank).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file, save_model
from safetensors.torch import load_model as load_model_file

from convssl.runs import write_json_atomic

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAINER_STATE = "trainer_state.json"
TRAINER_MODEL = "trainer_model.safetensors"
OPTIMIZER = "optimizer.pt"
RNG_FILE = "rng_states.safetensors"
BEST_FILE = "best.json"


def capture_rng_state() -> dict[str, Any]:
    """This process's generators; tensors for torch, plain lists for python and numpy."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_to_files(per_rank: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {}
    for rank, state in enumerate(per_rank):
        tensors[f"rank{rank}.torch"] = state["torch"]
        for i, cuda_state in enumerate(state.get("cuda", [])):
            tensors[f"rank{rank}.cuda{i}"] = cuda_state
        plain[str(rank)] = {"python": state["python"], "numpy": state["numpy"]}
    return tensors, plain


def _rng_from_files(folder: Path, plain: dict[str, Any], rank: int) -> dict[str, Any] | None:
    tensors = load_file(folder / RNG_FILE)
    if f"rank{rank}.torch" not in tensors or str(rank) not in plain:
        return None
    state = dict(plain[str(rank)])
    state["torch"] = tensors[f"rank{rank}.torch"]
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith(f"rank{rank}.cuda"))]
    if cuda:
        state["cuda"] = cuda
    return state


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (temporary folders never match), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for child in ckpt_dir.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / TRAINER_STATE).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Half-written folders left by a killed run; never visible as checkpoints, removed on start."""
    if ckpt_dir.is_dir():
        for child in ckpt_dir.iterdir():
            if child.name.startswith(".tmp-") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    write_hf_folder: Callable[[Path], None],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer_state: dict[str, Any],
    rng_per_rank: list[dict[str, Any]],
) -> Path:
    """Write `step-N/` atomically: everything goes to `.tmp-step-N-PID/`, then one rename."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step}"
    if final.exists():
        return final
    tmp = ckpt_dir / f".tmp-step-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_hf_folder(tmp)
    save_model(model, str(tmp / TRAINER_MODEL))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    rng_tensors, rng_plain = _rng_to_files(rng_per_rank)
    save_file(rng_tensors, str(tmp / RNG_FILE))
    state = dict(trainer_state, step=step, scheduler=scheduler.state_dict(), rng=rng_plain)
    (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    _fsync_tree(tmp)
    os.rename(tmp, final)
    return final


def _fsync_tree(folder: Path) -> None:
    """Flush file contents before the rename so the folder is complete even after a power cut."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore model, optimizer, schedule and this rank's generators; return the trainer state."""
    state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    device = next(model.parameters()).device
    missing, unexpected = load_model_file(model, str(folder / TRAINER_MODEL), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(
            f"{folder / TRAINER_MODEL}: does not match the configured model "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER, map_location=device, weights_only=True))
    scheduler.load_state_dict(state["scheduler"])
    rng = _rng_from_files(folder, state["rng"], rank)
    if rng is None:
        raise ValueError(f"{folder}: no random state for rank {rank}; resume with the same number of processes")
    restore_rng_state(rng)
    return state


def apply_retention(ckpt_dir: Path, keep_last: int, best_step: int | None) -> list[Path]:
    """Delete all but the last `keep_last` checkpoints and the best one; return what was removed."""
    found = list_checkpoints(ckpt_dir)
    keep = {step for step, _ in found[-keep_last:]}
    if best_step is not None:
        keep.add(best_step)
    removed = []
    for step, path in found:
        if step in keep:
            continue
        # Rename first so no half-deleted folder is ever visible under a checkpoint name.
        doomed = ckpt_dir / f".tmp-delete-{step}-{os.getpid()}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def write_best(ckpt_dir: Path, step: int, metric: str, value: float) -> None:
    write_json_atomic(ckpt_dir / BEST_FILE, {"step": step, "path": f"step-{step}", "metric": metric, "value": value})


def read_best(ckpt_dir: Path) -> dict[str, Any] | None:
    path = ckpt_dir / BEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
