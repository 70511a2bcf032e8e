"""The bf16-on-CPU warning: measured matmul speeds decide it; cpuinfo files written here describe the CPU."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from convssl.train.precision import (
    cpu_description,
    cpu_info,
    cpu_matmul_speeds,
    matmul_gflops,
    resolve_bf16,
    slow_bf16_reason,
    warn_if_bf16_slow,
)

INTEL_NO_AMX = (250.0, 145.0)  # fp32, bf16 GFLOP/s as measured on a Xeon with AVX-512 BF16 only
AMD_EPYC = (130.0, 340.0)


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    text = "".join(
        f"processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: {flags}\n\n"
        for i in range(2)
    )
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_bf16_slower_than_fp32_gets_a_reason_with_both_speeds_and_the_fix() -> None:
    reason = slow_bf16_reason(torch.device("cpu"), INTEL_NO_AMX)
    assert reason is not None and "145" in reason and "250" in reason and "bf16=false" in reason


def test_bf16_faster_than_fp32_or_another_device_gets_none() -> None:
    assert slow_bf16_reason(torch.device("cpu"), AMD_EPYC) is None
    assert slow_bf16_reason(torch.device("cuda"), INTEL_NO_AMX) is None


def test_a_small_bf16_gain_still_warns_because_casts_eat_it() -> None:
    assert slow_bf16_reason(torch.device("cpu"), (200.0, 220.0)) is not None


def test_warning_is_logged_only_when_bf16_is_on(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="convssl.train.precision"):
        warn_if_bf16_slow(False, torch.device("cpu"), INTEL_NO_AMX)
        assert not caplog.records
        warn_if_bf16_slow(True, torch.device("cpu"), INTEL_NO_AMX)
    assert any("bf16=false" in r.getMessage() for r in caplog.records)


def test_the_probe_measures_both_dtypes_on_this_machine() -> None:
    assert matmul_gflops(torch.float32, size=64, repeats=3) > 0
    fp32, bf16 = cpu_matmul_speeds()
    assert math.isfinite(fp32) and math.isfinite(bf16) and fp32 > 0 and bf16 > 0
    assert cpu_matmul_speeds() == (fp32, bf16)  # probed once per process


def test_cpu_description_names_amx_and_avx512_bf16(tmp_path: Path) -> None:
    no_amx = _cpuinfo(tmp_path, "fpu sse avx512f avx512_bf16 avx512_vnni")
    assert cpu_description(no_amx) == "Intel(R) Xeon(R) Processor, no AMX, with AVX-512 BF16"
    amx = _cpuinfo(tmp_path, "avx512f avx512_bf16 amx_bf16 amx_tile amx_int8")
    assert cpu_description(amx).endswith("with AMX, with AVX-512 BF16")


def test_unreadable_cpuinfo_is_unknown(tmp_path: Path) -> None:
    assert cpu_info(tmp_path / "missing") == ("unknown", set())
    model, flags = cpu_info()
    if Path("/proc/cpuinfo").exists():
        assert model != "unknown" and flags



def test_bf16_auto_takes_bf16_only_where_it_measured_faster(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="convssl.train.precision"):
        assert resolve_bf16("auto", torch.device("cpu"), AMD_EPYC) is True
        assert resolve_bf16("auto", torch.device("cpu"), INTEL_NO_AMX) is False
    assert any("fp32" in r.getMessage() and "145" in r.getMessage() for r in caplog.records)
    assert resolve_bf16(True, torch.device("cpu"), INTEL_NO_AMX) is True  # set by hand: kept
    assert resolve_bf16(False, torch.device("cpu"), AMD_EPYC) is False


def test_finetune_config_takes_auto_true_false_and_names_the_field_otherwise() -> None:
    import pytest

    from convssl.config import ConfigError, from_dict
    from convssl.downstream.config import FinetuneConfig

    assert FinetuneConfig().bf16 == "auto"
    assert from_dict(FinetuneConfig, {"bf16": "false"}, "cfg").bf16 is False
    assert from_dict(FinetuneConfig, {"bf16": "auto"}, "cfg").bf16 == "auto"
    with pytest.raises(ConfigError, match="bf16"):
        from_dict(FinetuneConfig, {"bf16": "maybe"}, "cfg")
