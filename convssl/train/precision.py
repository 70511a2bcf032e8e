"""Whether bf16 autocast pays on this CPU, measured rather than guessed from the CPU's flags.

The feature flags do not tell: with AMX tiles bf16 matmuls ran 4-5x fp32 (Intel Xeon), with
AVX-512 BF16 alone they ran 2.6x fp32 on an AMD EPYC (340 vs 130 GFLOP/s) but at 0.6x on an
Intel Xeon without AMX (145 vs 250 GFLOP/s), where a `mini` MLM step took 920 ms in bf16
against 730 ms in fp32. A few milliseconds of matmuls in each dtype settle it, so the loop
says so instead of silently training slower.
"""

from __future__ import annotations

import functools
import logging
import statistics
import time
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)
CPUINFO = Path("/proc/cpuinfo")
BF16_MIN_SPEEDUP = 1.25
"""bf16 autocast also pays casts and keeps fp32 master weights: below this matmul speed-up over
fp32 it is unlikely to train faster."""


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


def matmul_gflops(dtype: torch.dtype, size: int = 512, repeats: int = 7, best: bool = False) -> float:
    """Speed of a size^3 matmul in `dtype` on the CPU with torch's current threads: the median
    of `repeats` timings, or with `best` the fastest (a peak to score utilisation against)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    seconds = min(times) if best else statistics.median(times)
    return 2 * size**3 / seconds / 1e9


@functools.lru_cache(maxsize=1)
def cpu_matmul_speeds() -> tuple[float, float]:
    """(fp32, bf16) matmul GFLOP/s on this CPU, probed once per process (about 20 ms)."""
    return matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)


def _bf16_pays(fp32: float, bf16: float) -> bool:
    return bf16 >= BF16_MIN_SPEEDUP * fp32


def slow_bf16_reason(device: torch.device, speeds: tuple[float, float] | None = None) -> str | None:
    """Why bf16 autocast is likely slower than fp32 on this device, or None when it should pay."""
    if device.type != "cpu":
        return None
    fp32, bf16 = speeds if speeds is not None else cpu_matmul_speeds()
    if _bf16_pays(fp32, bf16):
        return None
    model, _ = cpu_info()
    return (f"on this CPU ({model}) bf16 matmuls ran at {bf16:.0f} GFLOP/s against {fp32:.0f} in fp32, "
            "so bf16 autocast may train slower than fp32; try bf16=false and compare tokens/s")


def warn_if_bf16_slow(enabled: bool, device: torch.device, speeds: tuple[float, float] | None = None) -> None:
    reason = slow_bf16_reason(device, speeds) if enabled else None
    if reason is not None:
        LOG.warning(reason)


def resolve_bf16(setting: bool | str, device: torch.device | None = None,
                 speeds: tuple[float, float] | None = None) -> bool:
    """The bf16 autocast a run uses: `true` / `false` as set; `auto` measures this CPU's matmuls
    (about 20 ms, once per process) and takes bf16 only where it runs at least
    `BF16_MIN_SPEEDUP` x fp32, so a host without fast bf16 does not train slower by default."""
    if setting != "auto":
        return bool(setting)
    if device is not None and device.type != "cpu":
        return True
    fp32, bf16 = speeds if speeds is not None else cpu_matmul_speeds()
    chosen = _bf16_pays(fp32, bf16)
    LOG.info("bf16=auto: %s (bf16 matmuls %.0f GFLOP/s, fp32 %.0f on this CPU)",
             "bf16 autocast" if chosen else "fp32", bf16, fp32)
    return chosen
