"""Fitting the machine: device, dtype, attention candidates, kernel probes, memory.

This machine has no GPU; these tests check that everything says so cleanly
and picks the CPU settings. tests/gpu/ covers a machine with one.
"""

from __future__ import annotations

import pytest
import torch

from daemon.worker import hardware

CPU = torch.device("cpu")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@needs_no_gpu
def test_auto_device_is_the_cpu_without_a_gpu() -> None:
    """device auto falls to the CPU when CUDA has no device."""
    assert hardware.choose_device("auto") == CPU
    assert hardware.choose_device("cpu") == CPU


@needs_no_gpu
@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_explicit_cuda_without_a_gpu_says_no_gpu(requested: str) -> None:
    """An explicit CUDA device on a machine without one is an error that says why."""
    with pytest.raises(hardware.DeviceUnavailableError, match="no GPU"):
        hardware.choose_device(requested)


def test_auto_dtype_on_cpu_is_float32() -> None:
    """The CPU computes in fp32 unless told otherwise."""
    assert hardware.choose_dtype("auto", CPU) is torch.float32


@pytest.mark.parametrize(
    ("requested", "dtype"),
    [("bfloat16", torch.bfloat16), ("float16", torch.float16), ("float32", torch.float32)],
)
def test_explicit_dtype_is_honoured(requested: str, dtype: torch.dtype) -> None:
    """A dtype named in the settings is used as is."""
    assert hardware.choose_dtype(requested, CPU) is dtype
    assert hardware.dtype_name(dtype) == requested


def test_cpu_has_no_bf16_or_tf32_tensor_cores() -> None:
    """bf16 'support' and TF32 are GPU notions: both false on the CPU."""
    assert hardware.bf16_supported(CPU) is False
    assert hardware.enable_tf32(CPU) is False


def test_auto_attention_on_cpu_is_sdpa_then_eager() -> None:
    """flash_attention_2 is not even a candidate on the CPU."""
    assert hardware.attention_candidates("auto", CPU) == (["sdpa", "eager"], [])


def test_requested_flash_attention_on_cpu_falls_back_with_a_reason() -> None:
    """flash_attention_2 asked for on the CPU is skipped, and the reason kept."""
    order, skipped = hardware.attention_candidates("flash_attention_2", CPU)
    assert order == ["sdpa", "eager"]
    assert len(skipped) == 1 and skipped[0].startswith("flash_attention_2: ")


@pytest.mark.parametrize(
    ("requested", "order"), [("sdpa", ["sdpa", "eager"]), ("eager", ["eager"])]
)
def test_explicit_attention_keeps_the_later_fallbacks(requested: str, order: list[str]) -> None:
    """An explicit choice is tried first; only the implementations after it follow."""
    assert hardware.attention_candidates(requested, CPU) == (order, [])


def test_flash_attn_probe_needs_cuda() -> None:
    """flash-attn is CUDA-only; on the CPU the probe says so without importing it."""
    probe = hardware.flash_attn_probe(CPU)
    assert not probe.ok and "CUDA" in probe.reason


def test_sdpa_math_backend_runs_on_cpu() -> None:
    """The reference math kernel runs everywhere; every backend gets a verdict."""
    probes = hardware.sdpa_backends(CPU)
    assert set(probes) == {"flash", "mem_efficient", "math"}
    assert probes["math"].ok
    for probe in probes.values():
        assert probe.ok or probe.reason


def test_cpu_context_is_always_usable() -> None:
    """There is no CUDA context to poison on the CPU."""
    assert hardware.context_usable(CPU) is True


def test_memory_readings_on_cpu_are_empty() -> None:
    """No accelerator, no readings; resets and cache releases are harmless no-ops."""
    hardware.reset_peak(CPU)
    hardware.release_cached_memory(CPU)
    assert hardware.memory_readings(CPU) == ()


@needs_no_gpu
def test_no_gpu_reason_names_the_cause() -> None:
    """The reason mentions what torch was built for, or that it is a CPU build."""
    reason = hardware.no_gpu_reason()
    assert reason.startswith("no GPU: ")
    assert (torch.version.cuda or "CPU-only") in reason


def test_nvml_readings_return_devices_or_a_reason() -> None:
    """NVML either lists devices or explains, never raises."""
    readings, reason = hardware.nvml_readings()
    assert readings or reason


@pytest.mark.parametrize(
    ("capability", "arch_list", "supported"),
    [
        ((9, 0), ["sm_80", "sm_90"], True),
        ((12, 0), ["sm_80", "sm_90"], False),  # consumer Blackwell on a build without sm_120
        ((12, 0), ["sm_90", "compute_90"], True),  # PTX the driver can JIT forward
        ((12, 0), ["sm_90", "compute_90a"], False),  # arch-specific PTX runs only on sm_90
        ((8, 6), ["sm_86"], True),
    ],
)
def test_arch_supported_reads_sass_and_ptx(
    capability: tuple[int, int], arch_list: list[str], supported: bool
) -> None:
    """A GPU is covered by its own SASS or by generic PTX of an older capability."""
    assert hardware.arch_supported(*capability, arch_list=arch_list) is supported


@pytest.mark.parametrize(
    ("environ", "index", "physical"),
    [
        ({"CUDA_VISIBLE_DEVICES": "5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, 0, 5),
        ({"CUDA_VISIBLE_DEVICES": "2,7", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, 1, 7),
        ({"CUDA_VISIBLE_DEVICES": "5"}, 0, 0),  # CUDA's own order: numbers not nvidia-smi's
        ({"CUDA_VISIBLE_DEVICES": "GPU-ab12", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, 0, 0),
        ({}, 3, 3),
    ],
)
def test_memory_is_labelled_by_the_gpu_a_pinned_worker_was_given(
    environ: dict[str, str], index: int, physical: int
) -> None:
    """A worker pinned to GPU 5 reports its memory as device 5, not torch's 0; unpinned, torch's index."""
    assert hardware.physical_index(index, environ) == physical
