"""Each benchmark part runs end to end on a tiny input through `ocr-inbox bench PART` and prints
its Markdown table. These check the harness, never speed (OCR_INBOX_BENCH_QUICK=1 shrinks every
input)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.bench import QUICK_ENV, gpu_absent_reason
from tests.support.daemon import REPO, daemon_env, run_cli
from tests.support.tools import require_tool

pytestmark = pytest.mark.slow


def bench(*parts: str, cwd: Path = REPO) -> tuple[int, str]:
    done = run_cli("bench", *parts, cwd=cwd, env={QUICK_ENV: "1"}, timeout=240)
    return done.returncode, done.stdout + done.stderr


def run_cli_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS...` in the checkout, to completion."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def assert_ran(output: str, part: str, *table_lines: str) -> None:
    for line in table_lines:
        assert line in output, output[-3000:]
    assert f"| {part} | ok |" in output, output[-3000:]


def test_overhead_compares_the_daemon_with_the_bare_engine() -> None:
    """(a) prints one row for the bare engine and rows for the daemon, with ratios."""
    code, output = bench("overhead")
    assert code == 0, output[-3000:]
    assert_ran(
        output,
        "overhead",
        "| way | pages | wall s | CPU s | pages/s | vs bare |",
        "| bare engine:",
        "| daemon: first drop to last output",
    )


def test_latency_breaks_each_file_down_for_singles_and_a_burst() -> None:
    """(b) prints p50 and p95 of every stage for single files and for a burst."""
    code, output = bench("latency")
    assert code == 0, output[-3000:]
    assert_ran(
        output,
        "latency",
        "| stage | single p50 | single p95 | burst p50 | burst p95 |",
        "| settle wait |",
        "| end to end |",
    )


def test_backlog_drops_files_and_times_a_start_up_over_finished_ones() -> None:
    """(c) prints the drop figures and the start-up figures, with nothing processed again."""
    code, output = bench("backlog")
    assert code == 0, output[-3000:]
    assert_ran(
        output,
        "backlog",
        "| time to first output (from the first drop) |",
        "| journal on disk (sqlite3 + wal + shm) |",
        "| files handed on or processed again (in process + daemon) | 0 |",
    )


def test_tesseract_comparison_scores_both_engines_per_page_type() -> None:
    """(d) prints CER, word recall and speed of both engines for every page type."""
    require_tool("tesseract")
    code, output = bench("tesseract")
    assert code == 0, output[-3000:]
    assert_ran(
        output,
        "tesseract",
        "| page type | pages | CER ours | CER tesseract |",
        "| rotated 90 degrees |",
        "| multi-page PDF | 2 |",
    )


def test_tuning_measures_settings_and_workers() -> None:
    """The follow-through part prints engine settings and the workers comparison."""
    code, output = bench("tuning")
    assert code == 0, output[-3000:]
    assert_ran(
        output,
        "tuning",
        "| configuration | threads | pages | CER |",
        "| 2 workers x 1 thread |",
    )


def test_gpu_benchmark_script_runs_a_tiny_model_on_the_cpu() -> None:
    """bench/gpu_vlm.py --device cpu --tiny measures and prints its table (the GPU run's harness)."""
    done = run_cli_module(
        "bench.gpu_vlm",
        "--device",
        "cpu",
        "--tiny",
        "--batches",
        "1,2",
        "--new-tokens",
        "4",
        "--repeats",
        "1",
        "--attention",
        "sdpa",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| attention | batch | prefill ms/page |" in done.stdout
    assert "| sdpa | 2 |" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(gpu_absent_reason() is not None, reason="needs an NVIDIA GPU")
def test_gpu_part_measures_the_model_on_the_gpu() -> None:
    """With a GPU, `ocr-inbox bench gpu` runs the Qwen2-VL-2B-sized model and prints its table."""
    code, output = bench("gpu")
    assert code == 0, output[-3000:]
    assert_ran(output, "gpu", "| attention | batch | prefill ms/page |", "| sdpa | 1 |")
