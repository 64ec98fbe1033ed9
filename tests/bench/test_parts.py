"""Each benchmark part runs end to end on a tiny input through `ocr-inbox bench PART` and prints
its Markdown table. These check the harness, never speed (OCR_INBOX_BENCH_QUICK=1 shrinks every
input)."""

from __future__ import annotations

import pytest

from daemon.benchmark_runner import QUICK_ENV, gpu_absent_reason
from harness.driver import REPO, run_cli
from harness.postgres_cluster import server_binaries
from tests.support.tools import require_tool, unavailable

pytestmark = pytest.mark.slow


def assert_part_prints(part: str, *table_lines: str) -> None:
    """`ocr-inbox bench PART` exits 0, prints these table lines and reports the part ok."""
    done = run_cli("bench", part, cwd=REPO, env={QUICK_ENV: "1"}, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for line in table_lines:
        assert line in output, output[-3000:]
    assert f"| {part} | ok |" in output, output[-3000:]


def test_overhead_compares_the_daemon_with_the_bare_engine() -> None:
    """(a) prints one row for the bare engine and rows for the daemon, with ratios."""
    assert_part_prints(
        "overhead",
        "| way | pages | wall s | CPU s | pages/s | vs bare |",
        "| bare engine:",
        "| daemon: first drop to last output",
    )


def test_latency_breaks_each_file_down_for_singles_and_a_burst() -> None:
    """(b) prints p50 and p95 of every stage for single files and for a burst."""
    assert_part_prints(
        "latency",
        "| stage | single p50 | single p95 | burst p50 | burst p95 |",
        "| settle wait |",
        "| end to end |",
    )


def test_backlog_drops_files_and_times_a_start_up_over_finished_ones() -> None:
    """(c) prints the drop figures and the start-up figures, with nothing processed again."""
    assert_part_prints(
        "backlog",
        "| time to first output (from the first drop) |",
        "| journal on disk (sqlite3 + wal + shm) |",
        "| files handed on or processed again (in process + daemon) | 0 |",
    )


def test_tesseract_comparison_scores_both_engines_per_page_type_and_layout() -> None:
    """(d) prints CER, word recall and speed of both engines for every page type and layout."""
    require_tool("tesseract")
    assert_part_prints(
        "tesseract",
        "| page type | pages | CER ours | CER tesseract |",
        "| rotated 90 degrees |",
        "| multi-page PDF | 2 |",
        "| layout | pages | CER ours | CER tesseract |",
        "| figure between column blocks | 1 |",
        "| two columns, skewed 4 degrees | 1 |",
    )


def test_searchable_pdf_part_compares_the_pdf_with_ocr() -> None:
    """(f) prints the PDF's cost on top of OCR for the scanned PDF and the photo."""
    assert_part_prints(
        "pdf",
        "| input | pages | OCR CPU s, no word boxes | OCR CPU s, word boxes | PDF CPU s |",
        "| 2-page scanned PDF | 2 |",
        "| phone photo (JPEG) | 1 |",
    )


def test_tuning_measures_settings_and_workers() -> None:
    """The follow-through part prints engine settings and the workers comparison."""
    assert_part_prints(
        "tuning",
        "| configuration | threads | pages | CER |",
        "| 2 workers x 1 thread |",
    )


def test_gpu_benchmark_script_runs_a_tiny_model_on_the_cpu() -> None:
    """bench/gpu_vlm.py --device cpu --tiny measures and prints its table (the GPU run's harness)."""
    done = run_cli(
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
        module="bench.gpu_vlm",
        cwd=REPO,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| attention | batch | prefill ms/page |" in done.stdout
    assert "| sdpa | 2 |" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(gpu_absent_reason() is not None, reason="needs an NVIDIA GPU")
def test_gpu_part_measures_the_model_on_the_gpu() -> None:
    """With a GPU, `ocr-inbox bench gpu` runs the Qwen2-VL-2B-sized model and prints its table."""
    assert_part_prints("gpu", "| attention | batch | prefill ms/page |", "| sdpa | 1 |")


def test_remote_measures_concurrency_and_the_real_server() -> None:
    """(g) prints pages/s per in-flight level against the fixed-delay server, and the daemon against a bare client."""
    assert_part_prints(
        "remote",
        "| in flight (K) | pages | most at the server at once |",
        "| in flight | pages | bare client pages/s | daemon pages/s | daemon / bare | >= 0.9 |",
    )


def test_postgres_part_compares_one_and_three_daemons_with_sqlite() -> None:
    """(h) prints a row per journal and daemon count, with ratios to SQLite and nothing done twice."""
    if server_binaries() is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    done = run_cli("bench", "postgres", cwd=REPO, env={QUICK_ENV: "1"}, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert (
        "| journal | daemons | first row | all rows | admitted files/s | vs SQLite x1 |" in output
    )
    rows = [
        line for line in output.splitlines() if line.startswith(("| SQLite |", "| PostgreSQL |"))
    ]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| SQLite", "1"],
        ["| PostgreSQL", "1"],
        ["| PostgreSQL", "3"],
    ], output[-3000:]
    assert all(" | 0 | 0 | " in row for row in rows), rows  # none done twice, none failed
    assert "| postgres | ok |" in output, output[-3000:]
