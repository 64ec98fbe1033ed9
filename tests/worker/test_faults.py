"""Fault classification from the exception types and messages PyTorch and CUDA really produce.

The exceptions are the real classes (torch.OutOfMemoryError, torch.AcceleratorError,
RuntimeError, MemoryError, the engines' own errors), carrying the messages c10's
CUDA checks and the caching allocator build.
"""

from __future__ import annotations

import pytest
import torch

from daemon.documents.opening import BadInputError
from daemon.worker import faults
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    EngineError,
    ModelNotFoundError,
)
from daemon.worker.engines.faulty import CUDA_ASSERT_MESSAGE, CUDA_OOM_MESSAGE


def cuda_check_message(description: str, enum_name: str) -> str:
    """The text c10_cuda_check_implementation raises for a CUDA runtime error."""
    return (
        f"CUDA error: {description}\n"
        f"Search for `{enum_name}' in https://docs.nvidia.com/cuda/cuda-runtime-api/"
        "group__CUDART__TYPES.html for more information.\n"
        "CUDA kernel errors might be asynchronously reported at some other API call, "
        "so the stacktrace below might be incorrect.\n"
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
    )


# (cudaGetErrorString, cudaGetErrorName, the kind we report)
STICKY_RUNTIME_ERRORS = [
    ("device-side assert triggered", "cudaErrorAssert", "device_assert"),
    ("an illegal memory access was encountered", "cudaErrorIllegalAddress", "illegal_address"),
    ("unspecified launch failure", "cudaErrorLaunchFailure", "launch_failure"),
    ("misaligned address", "cudaErrorMisalignedAddress", "misaligned_address"),
    (
        "an illegal instruction was encountered",
        "cudaErrorIllegalInstruction",
        "illegal_instruction",
    ),
    ("invalid program counter", "cudaErrorInvalidPc", "invalid_pc"),
    (
        "operation not supported on global/shared address space",
        "cudaErrorInvalidAddressSpace",
        "address_space",
    ),
    ("uncorrectable ECC error encountered", "cudaErrorECCUncorrectable", "ecc"),
    (
        "uncorrectable NVLink error detected during the execution",
        "cudaErrorNvlinkUncorrectable",
        "nvlink",
    ),
    ("hardware stack error", "cudaErrorHardwareStackError", "hardware_stack"),
    ("the launch timed out and was terminated", "cudaErrorLaunchTimeout", "launch_timeout"),
    ("unknown error", "cudaErrorUnknown", "gpu_lost"),
]

# The caching allocator's message (c10/cuda/CUDACachingAllocator.cpp).
ALLOCATOR_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.54 GiB "
    "of which 1.12 GiB is free. Including non-PyTorch memory, this process has 22.41 GiB memory "
    "in use. Of the allocated memory 21.80 GiB is allocated by PyTorch, and 180.00 MiB is "
    "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
    "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)


@pytest.mark.parametrize(("description", "enum_name", "kind"), STICKY_RUNTIME_ERRORS)
def test_sticky_cuda_errors_are_fatal_whatever_class_carries_them(
    description: str, enum_name: str, kind: str
) -> None:
    """Every sticky CUDA runtime error is cuda_fatal with its kind, as RuntimeError or AcceleratorError."""
    message = cuda_check_message(description, enum_name)
    for exc in (RuntimeError(message), torch.AcceleratorError(message)):
        assert faults.classify(exc) == "cuda_fatal"
        fault = faults.describe(exc, page=3)
        assert fault.kind == "cuda_fatal"
        assert fault.detail == {"cuda_kind": kind}
        assert fault.page == 3
        assert fault.message.startswith(f"CUDA error: {description}")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, "
            "opb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)`",
            "cublas",
        ),
        (
            "CUDA error: CUBLAS_STATUS_INTERNAL_ERROR when calling `cublasCreate(handle)`",
            "cublas",
        ),
        ("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED", "cudnn"),
        ("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR", "cudnn"),
        ("NVML_SUCCESS == r INTERNAL ASSERT FAILED: GPU is lost", "gpu_lost"),
        (
            "Unable to determine the device handle for GPU0: the GPU has fallen off the bus",
            "gpu_lost",
        ),
        (CUDA_ASSERT_MESSAGE, "device_assert"),
    ],
)
def test_library_and_driver_failures_after_a_sticky_fault_are_fatal(
    message: str, kind: str
) -> None:
    """cuBLAS/cuDNN execution failures and a lost GPU are sticky too."""
    fault = faults.describe(RuntimeError(message))
    assert (fault.kind, fault.detail.get("cuda_kind")) == ("cuda_fatal", kind)


def test_unrecognised_accelerator_error_restarts_the_worker() -> None:
    """A torch.AcceleratorError with a message we have no pattern for is treated as sticky."""
    exc = torch.AcceleratorError(cuda_check_message("some new driver failure", "cudaErrorFoo"))
    fault = faults.describe(exc)
    assert fault.kind == "cuda_fatal"
    assert fault.detail == {"cuda_kind": "unknown"}
    assert fault.exception_type == "torch.AcceleratorError"


def test_the_same_unknown_message_on_a_plain_runtime_error_is_an_engine_error() -> None:
    """Only the CUDA exception class earns the benefit of the doubt, not any RuntimeError."""
    exc = RuntimeError("CUDA error: some new driver failure")
    assert faults.classify(exc) == "engine_error"


def test_torch_out_of_memory_errors_are_oom() -> None:
    """torch.OutOfMemoryError and torch.cuda.OutOfMemoryError (one class) are OOM, whatever the text."""
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError
    for exc in (
        torch.OutOfMemoryError(ALLOCATOR_OOM),
        torch.cuda.OutOfMemoryError(ALLOCATOR_OOM),
        torch.OutOfMemoryError(""),
    ):
        assert faults.is_oom(exc)
        assert faults.classify(exc) == "oom"
        fault = faults.describe(exc)
        assert fault.exception_type == "torch.OutOfMemoryError"
        assert fault.detail == {}


def test_a_real_cpu_allocation_failure_is_oom() -> None:
    """The error torch raises when a CPU allocation fails is classified as OOM."""
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert "DefaultCPUAllocator: can't allocate memory" in str(caught.value)
    assert faults.classify(caught.value) == "oom"


@pytest.mark.parametrize(
    "message",
    [
        ALLOCATOR_OOM,
        CUDA_OOM_MESSAGE,
        cuda_check_message("out of memory", "cudaErrorMemoryAllocation"),
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
        "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)",
    ],
)
def test_out_of_memory_messages_on_other_classes_are_oom(message: str) -> None:
    """OOM raised as RuntimeError or AcceleratorError (not the allocator's class) is still OOM."""
    for exc in (RuntimeError(message), torch.AcceleratorError(message)):
        assert faults.is_oom(exc)
        assert faults.classify(exc) == "oom"


def test_python_memory_error_is_oom() -> None:
    """MemoryError (a CPU engine running out) is recoverable in-process like a CUDA OOM."""
    assert faults.classify(MemoryError()) == "oom"
    assert faults.describe(MemoryError()).message == "MemoryError"


def test_sticky_fault_wins_over_an_out_of_memory_mention() -> None:
    """A sticky error that also mentions memory is fatal: a retry in the same process cannot work."""
    message = "CUDA error: an illegal memory access was encountered (after out of memory)"
    for exc in (RuntimeError(message), MemoryError(message)):
        assert not faults.is_oom(exc)  # not even when the type says memory
        assert faults.classify(exc) == "cuda_fatal"


def test_bad_input_keeps_its_code() -> None:
    """BadInputError is bad_input with the documents module's code."""
    fault = faults.describe(BadInputError("corrupt", "the PNG stream is truncated"), page=0)
    assert (fault.kind, fault.detail, fault.page) == ("bad_input", {"code": "corrupt"}, 0)
    assert fault.exception_type == "daemon.documents.decoding.BadInputError"


def test_output_failures_and_missing_models_have_their_own_kinds() -> None:
    """Empty and degenerate output, and a model not on this machine, are told apart."""
    assert faults.classify(EmptyOutputError("no text")) == "empty_output"
    assert faults.classify(DegenerateOutputError("!!!!!!!!")) == "degenerate_output"
    assert faults.classify(ModelNotFoundError("Qwen/Qwen2-VL-2B-Instruct")) == "load_error"


@pytest.mark.parametrize(
    "exc",
    [
        EngineError("the processor rejected the image"),
        ValueError("Image features and image tokens do not match: tokens: 0, features 256"),
        KeyError("pixel_values"),
        RuntimeError("shape '[1, 3, 224, 224]' is invalid for input of size 100"),
        IndexError("index 5 is out of bounds for dimension 0 with size 4"),
    ],
)
def test_other_engine_failures_are_engine_errors(exc: Exception) -> None:
    """Ordinary Python and torch errors on the CPU side are engine errors: the worker lives on."""
    assert faults.classify(exc) == "engine_error"
    assert faults.describe(exc).kind == "engine_error"


def test_describe_names_the_class_and_bounds_the_message() -> None:
    """The fault names the exception type and keeps at most 2000 characters of its text."""
    fault = faults.describe(EngineError("x" * 5000))
    assert fault.exception_type == "daemon.worker.engines.base.EngineError"
    assert len(fault.message) == 2000
    assert faults.describe(KeyError()).message == "KeyError"
