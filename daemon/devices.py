"""Which device each worker of the daemon's chain runs on: the device plan.

`[worker] device` is one device for every worker (`auto`, `cpu`, `cuda`,
`cuda:N`, as before: `count` workers share it), or a list of GPUs
(`["cuda:0", "cuda:1"]`), or `"all"` (every GPU visible to the daemon): one
worker per GPU. A worker of a list is pinned to its GPU at spawn through its
environment: `CUDA_VISIBLE_DEVICES` names that one GPU and
`CUDA_DEVICE_ORDER=PCI_BUS_ID` makes the numbers those of `nvidia-smi`, so
the worker sees one device, `cuda:0`, and two workers never share a GPU by
accident. The worker sets both first thing, before anything imports torch
(daemon.worker.main), rather than the supervisor setting its own environment
around the start: the supervisor has threads that read the environment.

No torch here (the supervisor plans): the GPUs are counted by NVML when
nvidia-ml-py is installed, else by the driver's /proc/driver/nvidia/gpus
folders, and a `CUDA_VISIBLE_DEVICES` the daemon itself was started with is
honoured: `cuda:N` is then its N-th entry, and `"all"` is every entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from daemon.settings.sections import WorkerSettings

T = TypeVar("T")

VISIBLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")


class DevicePlanError(ValueError):
    """The devices `[worker]` asks for are not on this machine (the daemon does not start)."""


@dataclass(frozen=True, slots=True)
class WorkerDevice:
    """One worker's place: the device as the settings name it, and its pinning."""

    device: str  # "cuda:1" (a list's entry), or the one device every worker shares ("auto"...)
    visible: str | None = None  # CUDA_VISIBLE_DEVICES for the worker; None: the daemon's own

    @property
    def worker_device(self) -> str:
        """The device the worker's engine is told: a pinned worker sees one GPU, cuda:0."""
        return "cuda:0" if self.visible is not None else self.device

    def environment(self) -> dict[str, str]:
        """What the worker sets in its environment before anything imports torch."""
        if self.visible is None:
            return {}
        return {VISIBLE: self.visible, ORDER: "PCI_BUS_ID"}

    @property
    def nvml_device(self) -> str:
        """The device as NVML (and nvidia-smi) number it, for the GPU's memory."""
        if self.visible is not None and self.visible.isdigit():
            return f"cuda:{self.visible}"
        return self.device

    def describe(self) -> str:
        if self.visible is None:
            return self.device
        return f"{self.device} ({VISIBLE}={self.visible})"


GpuLister = Callable[[], list[str] | None]


def visible_gpus(
    environ: Mapping[str, str] | None = None,
    *,
    nvml_count: Callable[[], int | None] | None = None,
    proc_gpus: Path = PROC_GPUS,
) -> list[str] | None:
    """The GPUs the daemon may pin workers to, as CUDA_VISIBLE_DEVICES entries.

    None when nothing says (no CUDA_VISIBLE_DEVICES, no NVML, no NVIDIA driver
    folder): a listed device is then taken on trust, and its worker's load
    fails if the GPU is not there.
    """
    environ = os.environ if environ is None else environ
    if VISIBLE in environ:
        entries = [entry.strip() for entry in environ[VISIBLE].split(",")]
        # CUDA stops at the first entry it cannot use; "-1" or "" hide every GPU.
        usable: list[str] = []
        for entry in entries:
            if not entry or entry.startswith("-"):
                break
            usable.append(entry)
        return usable
    count = (nvml_count or _nvml_count)()
    if count is None and proc_gpus.is_dir():
        count = sum(1 for entry in proc_gpus.iterdir() if entry.is_dir())
    return None if count is None else [str(index) for index in range(count)]


def ask_nvml(question: Callable[[Any], T]) -> T | None:
    """`question(pynvml)` inside an NVML session; None when NVML is missing or fails.

    nvidia-ml-py is the vlm extra's and has no torch behind it, so the
    supervisor may ask it.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            return question(pynvml)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None


def _nvml_count() -> int | None:
    return ask_nvml(lambda nvml: int(nvml.nvmlDeviceGetCount()))


def device_plan(worker: WorkerSettings, gpus: GpuLister = visible_gpus) -> list[WorkerDevice]:
    """One entry per worker of the daemon's chain, in slot order ("0", "1", ...)."""
    device = worker.device
    if isinstance(device, str) and device != "all":
        return [WorkerDevice(device)] * (worker.count or 1)
    found = gpus()
    if device == "all":
        if not found:
            why = (
                f"the daemon's {VISIBLE} hides every GPU"
                if found is not None
                else "no NVIDIA GPU is visible (no NVML, no /proc/driver/nvidia/gpus)"
            )
            raise DevicePlanError(
                f'worker.device = "all", but {why}; name a device ("cpu", "auto") instead'
            )
        listed = [f"cuda:{index}" for index in range(len(found))]
    else:
        listed = list(device)
    if worker.count and worker.count != len(listed):
        raise DevicePlanError(
            f"worker.count = {worker.count} contradicts worker.device, which gives"
            f" {len(listed)} GPU(s) ({', '.join(listed)}): one worker runs per GPU;"
            f" leave worker.count at 0 or set it to {len(listed)}"
        )
    plan = []
    for name in listed:
        index = int(name.partition(":")[2])
        if found is not None and index >= len(found):
            raise DevicePlanError(
                f"worker.device lists {name}, but only {len(found)} GPU(s) are visible"
                + (f" ({VISIBLE}={','.join(found)})" if found else "")
            )
        plan.append(WorkerDevice(name, found[index] if found is not None else str(index)))
    return plan
