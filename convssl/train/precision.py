"""Whether bf16 autocast pays on this CPU.

bf16 matmuls are fast on CPUs with AMX tiles (4-5x fp32 on the host the defaults were tuned
on). With AVX-512 BF16 alone oneDNN's bf16 products ran slower than fp32 (about 145 vs 250
GFLOP/s on a 2-core Xeon without AMX), and a `mini` MLM step took 920 ms in bf16 against 730 ms
in fp32, so the loop says so instead of silently training slower.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)
CPUINFO = Path("/proc/cpuinfo")


def cpu_info(path: Path = CPUINFO) -> tuple[str, set[str]]:
    """(model name, feature flags) of the first CPU listed; ("unknown", set()) off Linux."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "unknown", set()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return model, flags


def cpu_description(path: Path = CPUINFO) -> str:
    model, flags = cpu_info(path)
    amx = "with" if "amx_bf16" in flags else "no"
    avx = "with" if "avx512_bf16" in flags else "no"
    return f"{model}, {amx} AMX, {avx} AVX-512 BF16"


def slow_bf16_reason(device: torch.device, path: Path = CPUINFO) -> str | None:
    """Why bf16 autocast is likely slower than fp32 on this device, or None when it should pay."""
    if device.type != "cpu":
        return None
    model, flags = cpu_info(path)
    if not flags or "amx_bf16" in flags:
        return None
    return (f"this CPU ({model}) has no AMX: bf16 matmuls run at fp32 speed or slower on it, so "
            "bf16 autocast may train slower than fp32; try bf16=false and compare tokens/s")


def warn_if_bf16_slow(enabled: bool, device: torch.device, path: Path = CPUINFO) -> None:
    reason = slow_bf16_reason(device, path) if enabled else None
    if reason is not None:
        LOG.warning(reason)
