"""The device plan: one worker per listed GPU, pinned through its environment; "all"; refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.devices import DevicePlanError, WorkerDevice, device_plan, visible_gpus
from daemon.settings import WorkerSettings


def two_gpus() -> list[str] | None:
    """The one stand-in: a machine whose NVML counts two GPUs."""
    return ["0", "1"]


def no_word() -> list[str] | None:
    """A machine with nothing to ask (no NVML, no NVIDIA driver)."""
    return None


def test_one_device_is_shared_by_count_workers_unpinned() -> None:
    """A single device keeps today's meaning: `count` workers there, the environment untouched."""
    plan = device_plan(WorkerSettings(device="cuda:1", count=3), two_gpus)

    assert plan == [WorkerDevice("cuda:1")] * 3
    assert plan[0].worker_device == "cuda:1"
    assert plan[0].environment() == {}
    assert device_plan(WorkerSettings(), two_gpus) == [WorkerDevice("auto")]  # count 0: one


def test_a_list_gives_each_worker_its_own_gpu_seen_as_cuda_0() -> None:
    """Each listed GPU gets one worker told cuda:0, pinned by CUDA_VISIBLE_DEVICES in PCI order."""
    plan = device_plan(WorkerSettings(device=["cuda:1", "cuda:0"]), two_gpus)

    assert [place.device for place in plan] == ["cuda:1", "cuda:0"]
    assert [place.worker_device for place in plan] == ["cuda:0", "cuda:0"]
    assert [place.environment() for place in plan] == [
        {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
    ]
    assert plan[0].describe() == "cuda:1 (CUDA_VISIBLE_DEVICES=1)"
    agreeing = WorkerSettings(device=["cuda:1", "cuda:0"], count=2)  # a count that agrees is fine
    assert device_plan(agreeing, two_gpus) == plan


def test_a_list_is_taken_on_trust_where_nothing_counts_the_gpus() -> None:
    """Without NVML or a driver folder, cuda:N pins to N; its worker's load says if it is absent."""
    plan = device_plan(WorkerSettings(device=["cuda:0", "cuda:3"]), no_word)

    assert [place.visible for place in plan] == ["0", "3"]


def test_a_listed_gpu_beyond_those_visible_is_refused() -> None:
    """cuda:2 on a machine with two GPUs is refused, naming the device and the count."""
    with pytest.raises(DevicePlanError, match=r"lists cuda:2, but only 2 GPU\(s\) are visible"):
        device_plan(WorkerSettings(device=["cuda:0", "cuda:2"]), two_gpus)


def test_all_is_one_worker_per_visible_gpu() -> None:
    """ "all" plans cuda:0..N-1 from the GPUs counted, each pinned to its own."""
    plan = device_plan(WorkerSettings(device="all"), two_gpus)

    assert [place.describe() for place in plan] == [
        "cuda:0 (CUDA_VISIBLE_DEVICES=0)",
        "cuda:1 (CUDA_VISIBLE_DEVICES=1)",
    ]


@pytest.mark.parametrize("found", [None, []])
def test_all_without_a_gpu_is_refused(found: list[str] | None) -> None:
    """ "all" with no GPU found (none counted, or every one hidden) is an error, not a CPU worker."""
    with pytest.raises(DevicePlanError, match=r'worker\.device = "all", but'):
        device_plan(WorkerSettings(device="all"), lambda: found)


def test_a_count_that_contradicts_all_is_refused() -> None:
    """worker.count 3 with "all" finding two GPUs names both keys."""
    with pytest.raises(DevicePlanError, match=r"worker.count = 3 contradicts worker.device"):
        device_plan(WorkerSettings(device="all", count=3), two_gpus)


def test_the_daemons_own_cuda_visible_devices_is_honoured() -> None:
    """With CUDA_VISIBLE_DEVICES=5,GPU-ab the daemon sees two GPUs; cuda:1 is its second entry."""
    found = visible_gpus({"CUDA_VISIBLE_DEVICES": "5, GPU-ab"}, nvml_count=lambda: 8)
    plan = device_plan(WorkerSettings(device=["cuda:1"]), lambda: found)

    assert found == ["5", "GPU-ab"]
    assert plan[0].environment()["CUDA_VISIBLE_DEVICES"] == "GPU-ab"
    assert plan[0].nvml_device == "cuda:1"  # not a number NVML knows: the plan's own name


@pytest.mark.parametrize(("value", "seen"), [("", []), ("-1", []), ("0,-1,2", ["0"])])
def test_cuda_visible_devices_stops_where_cuda_stops(value: str, seen: list[str]) -> None:
    """An empty value or "-1" hides every GPU; CUDA ignores the entries after an invalid one."""
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": value}, nvml_count=lambda: 4) == seen


def test_gpus_are_counted_by_nvml_then_by_the_driver_folder(tmp_path: Path) -> None:
    """NVML's count wins; without it the driver's per-GPU folders are counted; else nothing is known."""
    folder = tmp_path / "gpus"
    for bus in ("0000:01:00.0", "0000:41:00.0"):
        (folder / bus).mkdir(parents=True)

    assert visible_gpus({}, nvml_count=lambda: 3, proc_gpus=folder) == ["0", "1", "2"]
    assert visible_gpus({}, nvml_count=lambda: None, proc_gpus=folder) == ["0", "1"]
    assert visible_gpus({}, nvml_count=lambda: None, proc_gpus=tmp_path / "none") is None
