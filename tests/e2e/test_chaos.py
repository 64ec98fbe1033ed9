"""Chaos: 200 files, random injected faults, random worker SIGKILLs, one daemon SIGKILL and a restart.

Afterwards every input has exactly one outcome (a .ocr.md/.ocr.json pair or
one .ocr.error.json), nothing partial is left, and nothing was done twice.
bench/chaos.py runs the same drill on 2,000 files and reports recovery times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import ChaosPlan, figures, problems, run_chaos, table

pytestmark = pytest.mark.slow


def test_chaos_200_files_each_end_with_exactly_one_outcome(tmp_path: Path) -> None:
    """Under random faults and kills every file ends done or quarantined, once, with no leftovers."""
    result = run_chaos(tmp_path, ChaosPlan(files=200, timeout=400))
    assert problems(result) == []
    summary = figures(result)
    print(table(summary))
    # The drill really was chaotic: faults of several kinds, kills, restarts.
    injected = {kind for kind in summary.faults if kind not in ("sigkill", "daemon_kill")}
    assert len(injected) >= 4, summary.faults
    assert summary.faults["sigkill"] >= 1
    assert summary.faults["daemon_kill"] == 1
    assert summary.worker_restarts >= 5
    assert result.written_before_kill, "the daemon was killed before it wrote anything"
    assert summary.done + summary.failed == 200
    assert summary.done >= 190  # only bad_input and double losses on steady are quarantined
