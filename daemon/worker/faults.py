"""Classify a failure from the real exception type and message.

The class decides what happens next (docs/architecture.md, "The way of one file"): a sticky
CUDA error poisons the CUDA context of the whole process (PyTorch does not
reset it), so the worker must exit; an out-of-memory error is recoverable in
the same process; bad input is final for that content. torch is never
imported here: exceptions are recognised by class name and module, so the
supervisor can use this module too.
"""

from __future__ import annotations

import re

from daemon.protocol import Fault, FaultKind

# Messages of errors after which the CUDA context is unusable. Sources: the
# CUDA runtime's error strings (cudaErrorAssert, cudaErrorIllegalAddress,
# cudaErrorLaunchFailure, cudaErrorMisalignedAddress, cudaErrorIllegalInstruction,
# cudaErrorECCUncorrectable, cudaErrorHardwareStackError, ...) as PyTorch
# surfaces them, and cuBLAS/cuDNN execution failures that follow them.
# Recent PyTorch also names the enum ("Search for `cudaErrorAssert' in ..."),
# which is matched too, in case a driver words the description differently.
STICKY_CUDA_PATTERNS: dict[str, re.Pattern[str]] = {
    "device_assert": re.compile(r"device-side assert triggered|cudaErrorAssert\b", re.I),
    "illegal_address": re.compile(r"illegal memory access|cudaErrorIllegalAddress", re.I),
    "launch_failure": re.compile(
        r"unspecified launch failure|launch failed|cudaErrorLaunchFailure", re.I
    ),
    "misaligned_address": re.compile(r"misaligned address|cudaErrorMisalignedAddress", re.I),
    "illegal_instruction": re.compile(r"illegal instruction|cudaErrorIllegalInstruction", re.I),
    "invalid_pc": re.compile(r"invalid program counter|cudaErrorInvalidPc", re.I),
    "address_space": re.compile(
        r"not supported on global/shared address space|cudaErrorInvalidAddressSpace", re.I
    ),
    "ecc": re.compile(r"uncorrectable ECC error|ECC error|cudaErrorECCUncorrectable", re.I),
    "nvlink": re.compile(r"uncorrectable NVLink error|cudaErrorNvlinkUncorrectable", re.I),
    "hardware_stack": re.compile(r"hardware stack error|cudaErrorHardwareStackError", re.I),
    "cublas": re.compile(r"CUBLAS_STATUS_EXECUTION_FAILED|CUBLAS_STATUS_INTERNAL_ERROR", re.I),
    "cudnn": re.compile(r"CUDNN_STATUS_EXECUTION_FAILED|CUDNN_STATUS_INTERNAL_ERROR", re.I),
    "launch_timeout": re.compile(r"the launch timed out and was terminated", re.I),
    "gpu_lost": re.compile(
        r"GPU is lost|fallen off the bus|CUDA driver version is insufficient|"
        r"unknown error.*CUDA|CUDA error: unknown error",
        re.I,
    ),
}

OOM_PATTERN = re.compile(
    r"CUDA out of memory|out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|"
    r"DefaultCPUAllocator: can't allocate memory|std::bad_alloc|MPS backend out of memory",
    re.I,
)


def _qualified_names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__name__}" for cls in type(exc).__mro__}


def cuda_error_kind(message: str) -> str | None:
    """The kind of sticky CUDA error a message names, or None."""
    for kind, pattern in STICKY_CUDA_PATTERNS.items():
        if pattern.search(message):
            return kind
    return None


def is_oom(exc: BaseException) -> bool:
    """Out of memory and nothing worse: a message that also names a sticky CUDA
    error is not one, since retrying smaller cannot help a poisoned context."""
    message = str(exc)
    if cuda_error_kind(message) is not None:
        return False
    names = _qualified_names(exc)
    if "torch.OutOfMemoryError" in names or "torch.cuda.OutOfMemoryError" in names:
        return True
    if isinstance(exc, MemoryError):
        return True
    return bool(OOM_PATTERN.search(message))


def classify(exc: BaseException) -> FaultKind:
    """Map an exception raised while loading or recognising to a fault kind."""
    # Local imports: these modules are cheap, but keep this module importable
    # without PIL in the supervisor's minimal paths.
    from daemon.documents.opening import BadInputError
    from daemon.worker.engines.base import (
        DegenerateOutputError,
        EmptyOutputError,
        ModelNotFoundError,
        ServerUnavailableError,
    )

    if isinstance(exc, ServerUnavailableError):
        return "unavailable"
    if isinstance(exc, BadInputError):
        return "bad_input"
    if isinstance(exc, EmptyOutputError):
        return "empty_output"
    if isinstance(exc, DegenerateOutputError):
        return "degenerate_output"
    if isinstance(exc, ModelNotFoundError):
        return "load_error"
    message = str(exc)
    if cuda_error_kind(message) is not None:
        return "cuda_fatal"
    if is_oom(exc):
        return "oom"
    if _is_accelerator_error(exc):
        # A CUDA runtime error we have no pattern for. Most such errors are
        # sticky, and treating a harmless one as sticky costs one reload,
        # while the opposite would leave a poisoned context failing every
        # file that follows: restart.
        return "cuda_fatal"
    return "engine_error"


def _is_accelerator_error(exc: BaseException) -> bool:
    """torch.AcceleratorError (PyTorch >= 2.8 raises it for CUDA runtime errors)."""
    return "torch.AcceleratorError" in _qualified_names(exc)


def describe(exc: BaseException, *, page: int | None = None) -> Fault:
    """A Fault for the protocol: kind, message and the exception's type."""
    kind = classify(exc)
    detail: dict[str, str] = {}
    if kind == "cuda_fatal":
        detail["cuda_kind"] = cuda_error_kind(str(exc)) or "unknown"
    code = getattr(exc, "code", None)
    if kind == "bad_input" and isinstance(code, str):
        detail["code"] = code
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        detail["status"] = str(status)
    message = str(exc).strip() or type(exc).__name__
    return Fault(
        kind=kind,
        message=message[:2000],
        exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        page=page,
        detail=detail,
    )
