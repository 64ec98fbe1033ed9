"""Fit a model to the machine: device, dtype, attention kernel, memory readings.

Imported only in worker processes (and `doctor`): it imports torch. Every
probe here runs a real, tiny computation on the device instead of trusting
version tables, because the failure that matters in practice is a kernel
that imports fine and then has no code for this GPU (flash-attn 2 wheels on
consumer Blackwell, sm_120).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from daemon.protocol import GpuMemory

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# The order in which attention implementations are tried: fastest first,
# the reference implementation last.
ATTENTION_ORDER: tuple[str, ...] = ("flash_attention_2", "sdpa", "eager")

SDPA_BACKENDS: dict[str, str] = {
    "flash": "FLASH_ATTENTION",
    "mem_efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


class DeviceUnavailableError(RuntimeError):
    """The settings ask for a CUDA device that this machine does not have."""


@dataclass(frozen=True, slots=True)
class Probe:
    """The outcome of running a tiny computation: did it run, and if not, why."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    capability: str  # "8.9"
    total_memory_bytes: int
    arch_supported: bool  # torch was built with kernels for this capability
    bf16: bool
    tf32: bool


def no_gpu_reason() -> str:
    """Why torch sees no CUDA device, in words an operator can act on."""
    if torch.version.cuda is None:
        return "no GPU: this torch build has no CUDA support (a CPU-only wheel)"
    if torch.cuda.device_count() == 0:
        return (
            f"no GPU: torch is built for CUDA {torch.version.cuda} but finds no device "
            "(no NVIDIA driver, no GPU, or CUDA_VISIBLE_DEVICES hides them)"
        )
    return "no GPU: CUDA is not usable in this process"


def choose_device(requested: str) -> torch.device:
    """`auto`: the first CUDA device when there is one, else the CPU.

    An explicit `cuda`/`cuda:N` that this machine cannot honour is an error,
    not a silent move to the CPU: a model sized for a GPU would crawl there,
    and the fallback chain is the place to decide what runs instead.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {requested!r} requested, but {no_gpu_reason()}")
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {requested!r} requested, but only {torch.cuda.device_count()} "
            "CUDA device(s) are visible"
        )
    return torch.device("cuda", index)


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 (compute capability 8.0+); emulated bf16 does not count."""
    if device.type != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def choose_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 where the GPU has it, else fp16 on a GPU, fp32 on the CPU.

    fp16 is the last resort on GPUs because VLM activations overflow it
    (NaN logits: empty text or `!!!!`); the output checks catch that case.
    """
    if requested != "auto":
        return DTYPES[requested]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if bf16_supported(device) else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def enable_tf32(device: torch.device) -> bool:
    """Let fp32 matmuls use TF32 tensor cores where the GPU has them (8.0+)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return False
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    return True


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def flash_attn_probe(device: torch.device) -> Probe:
    """Does flash-attn 2 import AND run a tiny attention on this device?"""
    if device.type != "cuda":
        return Probe(False, "flash-attn needs a CUDA device")
    try:
        flash_attn = importlib.import_module("flash_attn")
    except Exception as error:  # ImportError, or an undefined symbol from a wrong build
        return Probe(False, f"flash_attn does not import: {type(error).__name__}: {error}")
    dtype = choose_dtype("auto", device)  # the half precision the model will run in
    try:
        # (batch, seqlen, heads, head_dim): the smallest shape its kernels accept.
        q = torch.randn(1, 8, 2, 64, device=device, dtype=dtype)
        out = flash_attn.flash_attn_func(q, q, q, causal=True)
        torch.cuda.synchronize(device)
    except Exception as error:  # "no kernel image is available for execution on the device"
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        return Probe(False, f"flash_attn fails on sm_{capability.replace('.', '')}: {error}")
    if not bool(torch.isfinite(out).all()):
        return Probe(False, "flash_attn returned non-finite values")
    return Probe(True)


def sdpa_backend_probe(device: torch.device, backend: str) -> Probe:
    """Does PyTorch's scaled_dot_product_attention run with only this backend enabled?"""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = choose_dtype("auto", device)
    try:
        # (batch, heads, seqlen, head_dim)
        q = torch.randn(1, 2, 8, 64, device=device, dtype=dtype)
        with sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[backend])):
            out = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return Probe(False, f"{type(error).__name__}: {first_line}")
    if not bool(torch.isfinite(out).all()):
        return Probe(False, "non-finite output")
    return Probe(True)


def sdpa_backends(device: torch.device) -> dict[str, Probe]:
    return {backend: sdpa_backend_probe(device, backend) for backend in SDPA_BACKENDS}


def attention_candidates(requested: str, device: torch.device) -> tuple[list[str], list[str]]:
    """The attention implementations to try, in order, and why any were skipped.

    `auto` starts with flash_attention_2 only where flash-attn runs here; an
    explicit choice is tried first and the ones after it in ATTENTION_ORDER
    are the fallbacks (the load-time forward pass decides).
    """
    skipped: list[str] = []
    if requested == "auto":
        order = list(ATTENTION_ORDER)
        if device.type != "cuda":
            order.remove("flash_attention_2")  # a CUDA-only kernel: not a candidate at all
    else:
        order = list(ATTENTION_ORDER[ATTENTION_ORDER.index(requested) :])
    if "flash_attention_2" in order:
        probe = flash_attn_probe(device)
        if not probe.ok:
            order.remove("flash_attention_2")
            skipped.append(f"flash_attention_2: {probe.reason}")
    return order, skipped


def gpu_info(index: int) -> GpuInfo:
    properties = torch.cuda.get_device_properties(index)
    major, minor = properties.major, properties.minor
    device = torch.device("cuda", index)
    return GpuInfo(
        index=index,
        name=properties.name,
        capability=f"{major}.{minor}",
        total_memory_bytes=int(properties.total_memory),
        arch_supported=arch_supported(major, minor),
        bf16=bf16_supported(device),
        tf32=major >= 8,
    )


def arch_supported(major: int, minor: int, arch_list: list[str] | None = None) -> bool:
    """Was torch compiled with SASS for this GPU, or PTX it can JIT to it?"""
    if arch_list is None:
        arch_list = torch.cuda.get_arch_list()
    if f"sm_{major}{minor}" in arch_list:
        return True
    # Generic PTX for an older capability runs through the driver's JIT;
    # arch-specific PTX ("compute_90a") runs only on that exact capability.
    capability = major * 10 + minor
    for arch in arch_list:
        if not arch.startswith("compute_"):
            continue
        digits = arch.removeprefix("compute_")
        if digits.isdigit() and int(digits) <= capability:
            return True
        if digits.endswith("a") and digits[:-1] == str(capability):
            return True
    return False


# --- memory ---------------------------------------------------------------------


def _nvml_memory(index: int) -> tuple[int | None, int | None]:
    """Device-wide used/total bytes from NVML (all processes), or (None, None)."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver library on this machine
        return None, None
    try:
        handle = _nvml_handle(pynvml, index)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.used), int(info.total)
    except Exception:
        return None, None
    finally:
        pynvml.nvmlShutdown()


def _nvml_handle(pynvml: object, index: int) -> object:
    # NVML numbers GPUs physically; torch numbers them after CUDA_VISIBLE_DEVICES.
    # The UUID is the same on both sides.
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")  # type: ignore[attr-defined]
        except Exception:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(physical_index(index))  # type: ignore[attr-defined]


def physical_index(index: int, environ: Mapping[str, str] | None = None) -> int:
    """The GPU's number as nvidia-smi gives it, for a worker pinned by the daemon
    (CUDA_VISIBLE_DEVICES in PCI order, daemon.devices): torch calls its one GPU
    0, and several pinned workers would all report memory as device 0. torch's
    own index wherever the numbers cannot be told apart."""
    environ = os.environ if environ is None else environ
    if environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return index
    entries = [entry.strip() for entry in environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    if index < len(entries) and entries[index].isdigit():
        return int(entries[index])
    return index


def gpu_memory(index: int) -> GpuMemory:
    """torch's allocator view (allocated, reserved, peak) plus NVML's device view."""
    used, total = _nvml_memory(index)
    return GpuMemory(
        device=physical_index(index),
        allocated_bytes=int(torch.cuda.memory_allocated(index)),
        reserved_bytes=int(torch.cuda.memory_reserved(index)),
        peak_bytes=int(torch.cuda.max_memory_allocated(index)),
        nvml_used_bytes=used,
        nvml_total_bytes=total,
    )


def memory_readings(device: torch.device) -> tuple[GpuMemory, ...]:
    """Readings for the engine's device; empty on the CPU."""
    if device.type != "cuda":
        return ()
    return (gpu_memory(0 if device.index is None else device.index),)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def context_usable(device: torch.device) -> bool:
    """Does the device still compute after an error? (False: the CUDA context is poisoned.)"""
    if device.type != "cuda":
        return True
    try:
        value = torch.ones(4, device=device).sum().item()
        torch.cuda.synchronize(device)
    except Exception:
        return False
    return value == 4.0


def release_cached_memory(device: torch.device) -> None:
    """Give cached allocator blocks back (after an OOM, or when a model is closed)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass(frozen=True, slots=True)
class NvmlReading:
    index: int
    name: str
    used_bytes: int
    total_bytes: int
    driver: str


def nvml_readings() -> tuple[list[NvmlReading], str]:
    """Every GPU NVML sees (physical numbering), or an empty list and why."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:
        return [], f"NVML unavailable: {error}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        readings = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            readings.append(
                NvmlReading(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    used_bytes=int(memory.used),
                    total_bytes=int(memory.total),
                    driver=driver.decode() if isinstance(driver, bytes) else str(driver),
                )
            )
        return readings, ""
    except Exception as error:
        return [], f"NVML query failed: {error}"
    finally:
        pynvml.nvmlShutdown()
