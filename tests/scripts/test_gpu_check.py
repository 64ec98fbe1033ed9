"""The GPU check runs end to end on the CPU (tiny sizes), so it cannot rot while no GPU is at hand.

The wheelhouse here holds ocr-inbox's own wheel and pip's, built and fetched
as `make gpu-wheelhouse` does (nothing else travels: the suite's environment
plays the GPU image, and has everything else). The check installs from it
offline into a venv over that environment, runs every step with --device cpu
and writes its summary, as it would under $OUT on the GPU machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.driver import REPO, daemon_env
from scripts import gpu_wheelhouse
from scripts.gpu_check_steps import StepFailed, judge_once
from scripts.limited_run import Finished

SCRIPT = REPO / "scripts" / "gpu_check.py"


@dataclass(frozen=True)
class CheckRun:
    code: int
    stdout: str
    work: Path
    out: Path
    wheelhouse: Path


def run_check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = daemon_env()
    env.pop("OUT", None)  # results go where --out or --work says
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def summary_rows(text: str) -> dict[str, tuple[str, str]]:
    """step -> (result, notes), from the summary's Markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("install", "gpu-tests", "model", "once", "bench"):
            rows[cells[0]] = (cells[1], cells[4])
    return rows


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory: pytest.TempPathFactory) -> CheckRun:
    """A wheelhouse of ours and pip's wheels, and one whole check run on the CPU."""
    root = tmp_path_factory.mktemp("gpu-check")
    wheelhouse = root / "wheelhouse"
    gpu_wheelhouse.prepare(wheelhouse, moving=[])
    work, out = root / "work", root / "out"
    done = run_check("--wheelhouse", str(wheelhouse), "--work", str(work), "--out", str(out))
    return CheckRun(done.returncode, done.stdout + done.stderr, work, out, wheelhouse)


@pytest.mark.slow
def test_the_whole_check_passes_on_the_cpu(cpu_check: CheckRun) -> None:
    """Installed offline from the wheelhouse; GPU tests skipped; model, once and bench pass; Markdown written."""
    assert cpu_check.code == 0, cpu_check.stdout[-4000:]
    rows = summary_rows(cpu_check.stdout)
    assert {step: result for step, (result, _) in rows.items()} == {
        "install": "pass",
        "gpu-tests": "skip",
        "model": "pass",
        "once": "pass",
        "bench": "pass",
    }
    install_notes = rows["install"][1]
    # The installed wheel answers, from the check's own venv, not the checkout.
    assert f"daemon_from {cpu_check.work / 'venv'}" in install_notes
    assert "1 wheels into" in install_notes
    assert "no GPU: all" in rows["gpu-tests"][1]
    assert "float32, sdpa" in rows["once"][1]
    assert "gpu-check: PASS" in cpu_check.stdout
    report = (cpu_check.out / "gpu-check.md").read_text(encoding="utf-8")
    assert summary_rows(report) == rows
    bench = (cpu_check.out / "gpu-bench.md").read_text(encoding="utf-8")
    assert "| attention | batch | prefill ms/page |" in bench and "| sdpa | 2 |" in bench
    assert "| sdpa | 1 |" in report  # the benchmark's table is in the summary too
    logs = {path.name for path in (cpu_check.out / "logs").iterdir()}
    assert logs == {"install.log", "gpu-tests.log", "model.log", "once.log", "bench.log"}


@pytest.mark.slow
def test_a_second_try_reuses_the_venv_and_a_step_past_its_limit_is_stopped(
    cpu_check: CheckRun,
) -> None:
    """--only install,once reuses the venv; `once` stopped at a 2 s limit is a timeout and fails the run."""
    done = run_check(
        "--wheelhouse",
        str(cpu_check.wheelhouse),
        "--work",
        str(cpu_check.work),
        "--out",
        str(cpu_check.out),
        "--only",
        "install,once",
        "--limit",
        "once=2",
    )
    assert done.returncode == 1, done.stdout[-3000:]
    rows = summary_rows(done.stdout)
    assert rows["install"][0] == "pass" and "already holds this wheelhouse" in rows["install"][1]
    assert rows["once"] == ("timeout", "ocr-inbox once did not finish within 2 s")
    assert [rows[step][0] for step in ("gpu-tests", "model", "bench")] == ["not run"] * 3
    log = (cpu_check.out / "logs" / "once.log").read_text(encoding="utf-8")
    assert "[stopped at the time limit of 2 s]" in log


def test_a_wheel_built_from_other_sources_is_refused(tmp_path: Path) -> None:
    """A wheelhouse whose recorded source digest differs from the checkout's fails the install step."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    manifest = {"own_wheel": "ocr_inbox-0.1.0-py3-none-any.whl", "source_digest": "0" * 64}
    (wheelhouse / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    done = run_check("--wheelhouse", str(wheelhouse), "--work", str(tmp_path / "work"), timeout=60)
    assert done.returncode == 1
    rows = summary_rows(done.stdout)
    assert rows["install"][0] == "fail" and "make gpu-wheelhouse" in rows["install"][1]
    assert {rows[step][0] for step in ("gpu-tests", "model", "once", "bench")} == {"skip"}
    assert (tmp_path / "work" / "results" / "gpu-check.md").is_file()


# --- judging the `once` step --------------------------------------------------------------


def _log(*records: dict[str, object]) -> str:
    return "\n".join(json.dumps(record) for record in records)


LOADED = {"event": "model.loaded", "dtype": "bfloat16", "attention": "sdpa", "device": "cuda:0"}


def test_once_passes_with_outputs_recorded_in_the_expected_dtype(tmp_path: Path) -> None:
    """Outputs whose JSON records bf16 and the attention of the load pass."""
    page = tmp_path / "page.png"
    Path(f"{page}.ocr.md").write_text("noise\n", encoding="utf-8")
    document = {"model": {"dtype": "bfloat16", "attention": "sdpa"}}
    Path(f"{page}.ocr.json").write_text(json.dumps(document), encoding="utf-8")
    finished = Finished(0, _log(LOADED, {"event": "file.done", "inference_seconds": 1.5}))
    assert "outputs written, inference 1.5 s" in judge_once(finished, page, "bfloat16", cpu=False)


def test_once_passes_with_the_empty_output_sidecar_and_fails_on_other_errors(
    tmp_path: Path,
) -> None:
    """An empty- or degenerate-output sidecar passes (random weights); another error kind fails."""
    page = tmp_path / "page.png"
    sidecar = Path(f"{page}.ocr.error.json")
    finished = Finished(1, _log(LOADED))
    for kind in ("empty_output", "degenerate_output"):
        sidecar.write_text(json.dumps({"error": {"kind": kind, "message": "m"}}), encoding="utf-8")
        assert f"{kind} sidecar" in judge_once(finished, page, "bfloat16", cpu=False)
    sidecar.write_text(json.dumps({"error": {"kind": "oom", "message": "m"}}), encoding="utf-8")
    with pytest.raises(StepFailed, match="error sidecar of kind oom"):
        judge_once(finished, page, "bfloat16", cpu=False)


def test_once_fails_on_the_wrong_dtype_or_attention_or_no_load(tmp_path: Path) -> None:
    """fp16 where bf16 is expected, eager attention, or no model.loaded record: the step fails."""
    page = tmp_path / "page.png"
    Path(f"{page}.ocr.error.json").write_text(
        json.dumps({"error": {"kind": "empty_output", "message": "m"}}), encoding="utf-8"
    )
    with pytest.raises(StepFailed, match="loaded in float16, expected bfloat16"):
        judge_once(Finished(1, _log({**LOADED, "dtype": "float16"})), page, "bfloat16", cpu=False)
    with pytest.raises(StepFailed, match="attention eager"):
        judge_once(Finished(1, _log({**LOADED, "attention": "eager"})), page, "bfloat16", cpu=False)
    with pytest.raises(StepFailed, match="never loaded"):
        judge_once(Finished(3, "chain exhausted"), page, "bfloat16", cpu=False)
