"""The bf16-on-CPU warning reads the CPU's feature flags (cpuinfo files written here)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from convssl.train.precision import cpu_description, cpu_info, slow_bf16_reason, warn_if_bf16_slow


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    text = "".join(
        f"processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: {flags}\n\n"
        for i in range(2)
    )
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cpu_without_amx_gets_a_reason_naming_the_fix(tmp_path: Path) -> None:
    path = _cpuinfo(tmp_path, "fpu sse avx512f avx512_bf16 avx512_vnni")
    reason = slow_bf16_reason(torch.device("cpu"), path)
    assert reason is not None and "no AMX" in reason and "bf16=false" in reason
    assert cpu_description(path) == "Intel(R) Xeon(R) Processor, no AMX, with AVX-512 BF16"


def test_amx_cpu_and_other_devices_get_none(tmp_path: Path) -> None:
    amx = _cpuinfo(tmp_path, "avx512f avx512_bf16 amx_bf16 amx_tile amx_int8")
    assert slow_bf16_reason(torch.device("cpu"), amx) is None
    assert cpu_description(amx).endswith("with AMX, with AVX-512 BF16")
    plain = _cpuinfo(tmp_path, "avx2")
    assert slow_bf16_reason(torch.device("cuda"), plain) is None


def test_unreadable_or_flagless_cpuinfo_says_nothing(tmp_path: Path) -> None:
    assert cpu_info(tmp_path / "missing") == ("unknown", set())
    assert slow_bf16_reason(torch.device("cpu"), tmp_path / "missing") is None
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert slow_bf16_reason(torch.device("cpu"), arm) is None


def test_warning_is_logged_only_when_bf16_is_on(tmp_path: Path, caplog) -> None:
    path = _cpuinfo(tmp_path, "avx512f avx512_bf16")
    with caplog.at_level(logging.WARNING, logger="convssl.train.precision"):
        warn_if_bf16_slow(False, torch.device("cpu"), path)
        assert not caplog.records
        warn_if_bf16_slow(True, torch.device("cpu"), path)
    assert any("no AMX" in r.getMessage() for r in caplog.records)


def test_this_machines_cpuinfo_parses() -> None:
    model, flags = cpu_info()
    if Path("/proc/cpuinfo").exists():
        assert model != "unknown" and flags
