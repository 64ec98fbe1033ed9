"""The CPU count thread pools are sized from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from daemon import cpus


def test_usable_cpus_follows_the_affinity_mask() -> None:
    """A process pinned to one CPU (as taskset or CPUAffinity= would) counts one."""
    script = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " + (
        "from daemon.cpus import usable_cpus; print(usable_cpus())"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert child.stdout.strip() == "1"
    assert cpus.usable_cpus() == len(os.sched_getaffinity(0))


def test_usable_cpus_falls_back_to_cpu_count_without_affinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the OS has no affinity call (not Linux), the machine's count is used."""
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.usable_cpus() == 6


def test_load_average_is_two_decimals_or_na(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load average prints with two decimals, and as "n/a" where the OS cannot give it."""
    monkeypatch.setattr(os, "getloadavg", lambda: (1.234, 0.0, 0.0))
    assert cpus.load_average() == "1.23"

    def unavailable() -> tuple[float, float, float]:
        raise OSError("Load average is unobtainable")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert cpus.load_average() == "n/a"
