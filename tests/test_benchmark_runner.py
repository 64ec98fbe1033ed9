"""`ocr-inbox bench`: finding the checkout, choosing parts, skipping the GPU part without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import benchmark_runner as bench
from harness.driver import REPO, run_cli


def test_the_checkout_is_found_from_the_package_or_the_working_directory(tmp_path: Path) -> None:
    """The source tree with bench/ and harness/ is found; a folder without them is not."""
    assert bench.find_checkout() == REPO
    assert bench.find_checkout([tmp_path, REPO]) == REPO
    assert bench.find_checkout([tmp_path]) is None


def test_outside_a_checkout_it_says_where_the_benchmarks_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a checkout (an installed wheel elsewhere) the command explains and exits 2."""
    monkeypatch.setattr(bench, "find_checkout", lambda: None)
    assert bench.main([]) == bench.EXIT_USAGE
    assert "source checkout" in capsys.readouterr().err


def test_unknown_parts_are_refused_with_the_list_of_parts() -> None:
    """A misspelt part exits 2 and names the parts there are; nothing runs."""
    done = run_cli("bench", "overhead", "tesseracts", cwd=REPO)
    assert done.returncode == 2
    assert "tesseracts" in done.stderr
    for part in bench.PARTS:
        assert part.name in done.stderr
    assert "###" not in done.stdout


def test_default_parts_are_a_to_f_and_the_optional_ones_stay_out() -> None:
    """`ocr-inbox bench` with no part runs (a) to (f); tuning and chaos run only when named."""
    defaults = [part.name for part in bench.PARTS if part.default]
    assert defaults == ["overhead", "latency", "backlog", "tesseract", "gpu", "pdf", "remote"]
    for part in bench.PARTS:
        assert (REPO / Path(*part.module.split("."))).with_suffix(".py").is_file(), part.module


@pytest.mark.skipif(bench.gpu_absent_reason() is None, reason="this machine has a GPU")
def test_gpu_part_is_skipped_with_the_reason_without_a_gpu() -> None:
    """Without a GPU the GPU part prints why it was skipped and the run still succeeds."""
    done = run_cli("bench", "gpu", cwd=REPO, env={bench.QUICK_ENV: "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Skipped: no NVIDIA GPU" in done.stdout
    assert "| gpu | skipped: no NVIDIA GPU" in done.stdout
