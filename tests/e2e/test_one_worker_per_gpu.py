"""One worker per GPU: the real daemon spawns a worker per listed device, each pinned to its GPU.

This machine has no GPU, so the engine is the faulty one, which runs on the
CPU whatever device it is told. What these tests prove is the part the daemon
owns: the plan, the environment each spawned worker finds before its engine
loads (reported by the worker itself), and the metrics and logs labelled with
it. That CUDA then shows such a worker one GPU is CUDA's documented behaviour
for CUDA_VISIBLE_DEVICES, not checked here. The daemon's own
CUDA_VISIBLE_DEVICES is set in each test so that a GPU host's NVML count does
not change the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.driver import Daemon, running_daemon
from harness.drops import drop_png, faulty_settings

pytestmark = pytest.mark.slow


def gpu_settings(root: Path, device: str | list[str]) -> dict[str, Any]:
    settings = faulty_settings(root / "inbox", root / "state", page_seconds=0.4)
    settings["worker"]["device"] = device
    return settings


def reported(daemon: Daemon) -> dict[str, tuple[str, str, str]]:
    """Each worker's placement, CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, from its own log line."""
    lines = daemon.wait_for("worker.loaded", count=2)
    return {
        line["role"]: (line["placement"], line["cuda_visible_devices"], line["cuda_device_order"])
        for line in lines
    }


def test_each_listed_gpu_gets_its_own_pinned_worker_and_both_serve(tmp_path: Path) -> None:
    """device ["cuda:0", "cuda:1"]: two workers, CUDA_VISIBLE_DEVICES 0 and 1 in PCI order,
    worker_info labelled by what each reported, and files done by both slots."""
    settings = gpu_settings(tmp_path, ["cuda:0", "cuda:1"])
    with running_daemon(tmp_path, settings, env={"CUDA_VISIBLE_DEVICES": "0,1"}) as daemon:
        daemon.wait_ready()
        assert sorted(reported(daemon).values()) == [
            ("cuda:0", "0", "PCI_BUS_ID"),
            ("cuda:1", "1", "PCI_BUS_ID"),
        ]
        [plan] = daemon.wait_for("workers.planned")
        assert plan["devices"] == [
            "cuda:0 (CUDA_VISIBLE_DEVICES=0)",
            "cuda:1 (CUDA_VISIBLE_DEVICES=1)",
        ]
        for slot in ("0", "1"):
            labels = {"worker": slot, "device": f"cuda:{slot}", "cuda_visible_devices": slot}
            assert daemon.metric("ocr_inbox_worker_info", model="fake", **labels) == 1
        for index in range(4):
            drop_png(daemon.inbox / f"page-{index}.png", seed=400 + index)
        daemon.wait_for("file.done", count=4)
        slots = {line["slot"] for line in daemon.find("file.dispatched")}
        assert slots == {"0", "1"}
        assert daemon.stop() == 0


def test_all_pins_one_worker_to_each_gpu_the_daemon_sees(tmp_path: Path) -> None:
    """device "all" under the daemon's CUDA_VISIBLE_DEVICES=3,5: cuda:0 and cuda:1, pinned to 3 and 5."""
    settings = gpu_settings(tmp_path, "all")
    with running_daemon(tmp_path, settings, env={"CUDA_VISIBLE_DEVICES": "3,5"}) as daemon:
        daemon.wait_ready()
        assert sorted(reported(daemon).values()) == [
            ("cuda:0", "3", "PCI_BUS_ID"),
            ("cuda:1", "5", "PCI_BUS_ID"),
        ]
        assert daemon.stop() == 0
