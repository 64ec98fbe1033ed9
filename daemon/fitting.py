"""Whether the models kept resident at once fit the GPU, judged before any is loaded.

With inbox profiles several chains are served at once (see
daemon.supervising.inbox_chains): the daemon's chain keeps its first model
loaded in a worker per entry of the device plan (daemon.devices; one per GPU
when pinned), and every other chain its first model in one worker on the
plan's first device, a model shared by chains once; so that first GPU is
the one judged. Each vision-language model on a GPU holds at least its
weights there, so a set whose weights (with headroom for activations, the KV
cache and each process's CUDA context) exceed the GPU's memory cannot run:
the daemon refuses it at start, naming the models, and `ocr-inbox doctor`
says the same with what loading each really took.

No torch here (the supervisor runs this): weights are measured by their
files' sizes, the GPU by NVML when nvidia-ml-py is installed. Where either is
unknown (a hub id not in the cache, no NVML), nothing is refused on a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from daemon.devices import DevicePlanError, WorkerDevice, ask_nvml, device_plan
from daemon.settings import HfVlmModel, Settings

# Weights are not all a model needs on the GPU: activations, the KV cache and
# the CUDA context of each worker come on top. 20 % is a floor, not a promise.
HEADROOM = 1.2
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


@dataclass(frozen=True, slots=True)
class ResidentModel:
    name: str
    copies: int  # workers that hold it at once
    on_gpu: bool
    weight_bytes: int | None  # None: unknown (not a GPU model, or its files not found)


def resident_models(settings: Settings, *, watch: bool = True) -> list[ResidentModel]:
    """The models loaded at once when every chain serves with its first model."""
    from daemon.supervising.inbox_chains import resident_heads, serving_chains

    primary, others = serving_chains(settings, watch=watch)
    # The first GPU holds the most: its share of the chain's workers, and
    # every other chain's first model (they run on the plan's first device).
    plan = _plan(settings)
    copies = {primary[0]: sum(1 for place in plan if place.device == plan[0].device)}
    for head in resident_heads(others, lambda model: True):
        copies.setdefault(head, 1)
    return [
        ResidentModel(name, count, _on_gpu(settings, name), weight_bytes(settings, name))
        for name, count in copies.items()
    ]


def _plan(settings: Settings) -> list[WorkerDevice]:
    try:
        return device_plan(settings.worker)
    except DevicePlanError:  # refused at start; `doctor` still shows the rest
        return [WorkerDevice("auto")] * (settings.worker.count or 1)


def first_device(settings: Settings) -> str:
    """The GPU that holds the most models (the plan's first), as NVML numbers it."""
    return _plan(settings)[0].nvml_device


def _on_gpu(settings: Settings, name: str) -> bool:
    return isinstance(settings.model(name), HfVlmModel) and settings.worker.device != "cpu"


def weight_bytes(settings: Settings, name: str) -> int | None:
    """The size of a vision-language model's weight files, where they are found on disk."""
    model = settings.model(name)
    if not isinstance(model, HfVlmModel):
        return None
    folder = Path(model.path).expanduser()
    if not folder.is_dir():
        folder = _cached_snapshot(model.path, model.revision) or folder
    if not folder.is_dir():
        return None
    for pattern in WEIGHT_PATTERNS:  # a repo may carry .bin copies of its safetensors
        files = sorted(folder.glob(pattern))
        if files:
            return sum(path.stat().st_size for path in files)  # stat follows cache symlinks
    return None


def _cached_snapshot(hub_id: str, revision: str | None) -> Path | None:
    """The Hugging Face cache's snapshot folder of a hub id, without importing huggingface_hub."""
    if hub_id.count("/") != 1:
        return None
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    repo = Path(cache) / ("models--" + hub_id.replace("/", "--"))
    ref = repo / "refs" / (revision or "main")
    try:
        commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def gpu_total_bytes(device: str) -> int | None:
    """The memory of the GPU the workers use (NVML); None when there is none or NVML is missing."""
    if device == "cpu":
        return None
    index = int(device.partition(":")[2] or 0)
    return ask_nvml(
        lambda nvml: int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).total)
    )


def needed_bytes(models: list[ResidentModel]) -> int:
    """GPU memory the resident set needs at least: weights of every copy, with headroom."""
    weights = sum(m.copies * (m.weight_bytes or 0) for m in models if m.on_gpu)
    return int(weights * HEADROOM)


def fit_problem(models: list[ResidentModel], total_bytes: int | None) -> str | None:
    """Why the resident set cannot run on a GPU of `total_bytes` (None: it fits, or cannot be judged)."""
    if total_bytes is None or not any(m.on_gpu and m.weight_bytes for m in models):
        return None
    needed = needed_bytes(models)
    if needed <= total_bytes:
        return None
    listed = ", ".join(
        f"{m.name}{f' x{m.copies}' if m.copies > 1 else ''} ({_gib(m.weight_bytes)} of weights)"
        for m in models
        if m.on_gpu and m.weight_bytes
    )
    return (
        f"the models resident at once do not fit the GPU: {listed} need at least"
        f" {_gib(needed)} with {round((HEADROOM - 1) * 100)} % headroom, and it has"
        f" {_gib(total_bytes)}; give inboxes fewer distinct first models, share one,"
        " or lower [worker] count"
    )


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.1f} GiB"
