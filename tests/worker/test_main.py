"""The worker loop in a real spawned process, spoken to through the protocol.

Each test starts `daemon.worker.run_worker` exactly as the supervisor does
(multiprocessing spawn, a duplex Pipe), with the fault-injection engine, and
reads the worker's JSON log lines from the file its stdout was pointed at.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from daemon.protocol import (
    EXIT_CUDA_FATAL,
    EXIT_LOAD_FAILED,
    EXIT_OK,
    FromWorker,
    Job,
    JobDone,
    JobFailed,
    Loaded,
    LoadFailed,
    Progress,
    Shutdown,
)
from daemon.settings import FaultRule, FaultyModel
from daemon.supervising.worker_handles import SPAWN
from daemon.worker import run_worker
from tests.support.workers import drill_config

WIDTH, HEIGHT = 400, 300


@dataclass
class Worker:
    process: BaseProcess
    conn: Connection
    log: Path

    def receive(self, timeout: float = 60) -> FromWorker:
        if not self.conn.poll(timeout):
            raise AssertionError(f"no message from the worker in {timeout} s:\n{self.log_text()}")
        message: FromWorker = self.conn.recv()
        return message

    def outcome(self, job: Job, timeout: float = 60) -> JobDone | JobFailed:
        """Send a job; return its JobDone or JobFailed (Progress messages are skipped)."""
        self.conn.send(job)
        while True:
            message = self.receive(timeout)
            if isinstance(message, Progress):
                assert message.job_id == job.job_id
                continue
            assert isinstance(message, JobDone | JobFailed), message
            assert message.job_id == job.job_id
            return message

    def exit_code(self, timeout: float = 30) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    found.append(record)
        return found


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    started: list[Worker] = []

    def start(model: FaultyModel, **config: Any) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        worker_config = drill_config(model, worker_id=len(started) + 1, log_level="debug", **config)
        parent_end, child_end = SPAWN.Pipe(duplex=True)
        process = SPAWN.Process(target=run_worker, args=(worker_config, child_end), daemon=True)
        # The spawned child inherits file descriptor 1: point it at a log file
        # for the moment of the start, as systemd points the daemon's at the journal.
        saved = os.dup(1)
        with log.open("ab") as handle:
            os.dup2(handle.fileno(), 1)
            try:
                process.start()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
        child_end.close()
        worker = Worker(process, parent_end, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.exitcode is None:
            worker.process.kill()
        worker.process.join(10)
        worker.conn.close()


def page(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    Image.new("RGB", size, "white").save(path)
    return path


def loaded(worker: Worker) -> Loaded:
    message = worker.receive()
    assert isinstance(message, Loaded), message
    return message


def test_serves_jobs_and_stops_on_shutdown(start_worker: Any, tmp_path: Path) -> None:
    """Loaded, then one JobDone per Job with the engine's text, then exit 0 on Shutdown."""
    worker = start_worker(FaultyModel())
    info = loaded(worker).info
    assert (info.engine, info.model) == ("faulty", "drill")
    for index in range(2):
        source = page(tmp_path / f"p{index}.png")
        done = worker.outcome(Job(index + 1, str(source)))
        assert isinstance(done, JobDone)
        [result] = done.result.pages
        assert result.text.text == f"p{index}.png {WIDTH}x{HEIGHT}"
        assert (result.scale, result.notes) == (1.0, ())
    worker.conn.send(Shutdown("test"))
    assert worker.exit_code() == EXIT_OK


def test_transient_oom_is_retried_smaller_in_the_same_worker(
    start_worker: Any, tmp_path: Path
) -> None:
    """An OOM at full size is retried at oom_scale: the page is done at 0.7 and its note says so."""
    model = FaultyModel(rules=[FaultRule(match="big-*", fault="oom_transient")])
    worker = start_worker(model, oom_retries=2, oom_scale=0.7)
    pid = worker.process.pid
    loaded(worker)
    done = worker.outcome(Job(1, str(page(tmp_path / "big-scan.png"))))
    assert isinstance(done, JobDone), done
    [result] = done.result.pages
    assert result.scale == pytest.approx(0.7)
    assert (result.width, result.height) == (WIDTH, HEIGHT)  # the page as opened
    assert result.text.text == f"big-scan.png {int(WIDTH * 0.7)}x{int(HEIGHT * 0.7)}"
    assert result.notes == ("out of memory: recognised at 0.70 of the page size",)
    assert len(worker.events("worker.oom")) == 1
    assert [event["attempt"] for event in worker.events("worker.oom_retry")] == [1]
    # Still the same, healthy process: the next file is done at full size.
    after = worker.outcome(Job(2, str(page(tmp_path / "small.png"))))
    assert isinstance(after, JobDone)
    assert after.result.pages[0].scale == 1.0
    assert worker.process.pid == pid and worker.process.is_alive()


def test_oom_that_never_fits_fails_the_job_after_oom_retries(
    start_worker: Any, tmp_path: Path
) -> None:
    """A page that is out of memory at every size fails with kind oom after oom_retries smaller tries."""
    model = FaultyModel(rules=[FaultRule(match="huge-*", fault="oom")])
    worker = start_worker(model, oom_retries=3, oom_scale=0.5)
    loaded(worker)
    failed = worker.outcome(Job(1, str(page(tmp_path / "huge-scan.png"))))
    assert isinstance(failed, JobFailed), failed
    assert failed.fault.kind == "oom"
    assert not failed.fatal
    assert failed.fault.page == 0
    assert "CUDA out of memory" in failed.fault.message
    retries = worker.events("worker.oom_retry")
    assert [event["attempt"] for event in retries] == [1, 2, 3]
    assert [event["size"] for event in retries] == [[200, 150], [100, 75], [50, 37]]
    # Out of memory is not sticky: the worker lives on and does the next file.
    assert isinstance(worker.outcome(Job(2, str(page(tmp_path / "next.png")))), JobDone)


def test_oom_retries_zero_fails_at_once(start_worker: Any, tmp_path: Path) -> None:
    """With oom_retries = 0 an out-of-memory page fails without a smaller retry."""
    model = FaultyModel(rules=[FaultRule(fault="oom_transient")])
    worker = start_worker(model, oom_retries=0)
    loaded(worker)
    failed = worker.outcome(Job(1, str(page(tmp_path / "a.png"))))
    assert isinstance(failed, JobFailed)
    assert failed.fault.kind == "oom"
    assert worker.events("worker.oom_retry") == []


def test_sticky_cuda_error_is_reported_fatal_and_the_worker_exits_3(
    start_worker: Any, tmp_path: Path
) -> None:
    """A device-side assert is sent as JobFailed(fatal=True), then the process exits with code 3."""
    model = FaultyModel(rules=[FaultRule(match="poison-*", fault="cuda_fatal")])
    worker = start_worker(model)
    loaded(worker)
    failed = worker.outcome(Job(1, str(page(tmp_path / "poison-1.png"))))
    assert isinstance(failed, JobFailed), failed
    assert failed.fatal
    assert failed.fault.kind == "cuda_fatal"
    assert failed.fault.detail == {"cuda_kind": "device_assert"}
    assert failed.memory == ()  # no memory readings from a poisoned context
    assert failed.sha256 is not None
    assert worker.exit_code() == EXIT_CUDA_FATAL
    [injected] = worker.events("fault.injected")
    assert (injected["fault"], injected["document"]) == ("cuda_fatal", "poison-1.png")


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("empty", "empty_output"), ("degenerate", "degenerate_output"), ("error", "engine_error")],
)
def test_per_file_failures_leave_the_worker_serving(
    start_worker: Any, tmp_path: Path, fault: str, kind: str
) -> None:
    """Empty, degenerate or failed output fails that job only; the next job is done."""
    worker = start_worker(
        FaultyModel(rules=[FaultRule.model_validate({"match": "bad-*", "fault": fault})])
    )
    loaded(worker)
    failed = worker.outcome(Job(1, str(page(tmp_path / "bad-1.png"))))
    assert isinstance(failed, JobFailed)
    assert (failed.fault.kind, failed.fatal) == (kind, False)
    assert isinstance(worker.outcome(Job(2, str(page(tmp_path / "good.png")))), JobDone)


def test_bad_and_vanished_inputs_are_not_engine_faults(start_worker: Any, tmp_path: Path) -> None:
    """A corrupt file is bad_input with its code; a missing one is bad_input 'vanished'."""
    worker = start_worker(FaultyModel())
    loaded(worker)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    failed = worker.outcome(Job(1, str(corrupt)))
    assert isinstance(failed, JobFailed)
    assert (failed.fault.kind, failed.fatal) == ("bad_input", False)
    assert failed.fault.detail.get("code")
    gone = worker.outcome(Job(2, str(tmp_path / "missing.png")))
    assert isinstance(gone, JobFailed)
    assert gone.fault.detail == {"code": "vanished"}
    assert isinstance(worker.outcome(Job(3, str(page(tmp_path / "fine.png")))), JobDone)


def test_load_failure_is_reported_and_the_worker_exits_4(start_worker: Any) -> None:
    """A model that cannot load gives LoadFailed (kind load_error, the cause kept) and exit code 4."""
    worker = start_worker(FaultyModel(load_fault="error"))
    message = worker.receive()
    assert isinstance(message, LoadFailed), message
    assert message.fault.kind == "load_error"
    assert message.fault.detail == {"cause": "engine_error"}
    assert "injected load failure" in message.fault.message
    assert worker.exit_code() == EXIT_LOAD_FAILED


def test_sticky_cuda_error_while_loading_keeps_its_kind(start_worker: Any) -> None:
    """A device-side assert at load is reported as cuda_fatal (not load_error), then exit code 4."""
    worker = start_worker(FaultyModel(load_fault="cuda_fatal"))
    message = worker.receive()
    assert isinstance(message, LoadFailed), message
    assert message.fault.kind == "cuda_fatal"
    assert message.fault.detail == {"cuda_kind": "device_assert"}
    assert worker.exit_code() == EXIT_LOAD_FAILED


def test_worker_ends_when_the_supervisor_end_of_the_pipe_closes(start_worker: Any) -> None:
    """An idle worker whose supervisor is gone (pipe closed) exits instead of lingering."""
    worker = start_worker(FaultyModel())
    loaded(worker)
    worker.conn.close()
    assert worker.exit_code() is not None


def test_a_pinned_worker_sets_its_gpu_before_loading_and_reports_it(start_worker: Any) -> None:
    """The environment in its config is the worker's own before the engine loads (and before
    torch could read it); Loaded and the worker.loaded line say what it found. The faulty
    engine runs on the CPU: this proves the pinning reaches the worker, not what CUDA does with it."""
    pinning = {"CUDA_VISIBLE_DEVICES": "7", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    worker = start_worker(FaultyModel(), device="cuda:0", placement="cuda:7", environment=pinning)

    assert loaded(worker).environment == pinning
    [line] = worker.events("worker.loaded")
    assert (line["placement"], line["cuda_visible_devices"], line["cuda_device_order"]) == (
        "cuda:7",
        "7",
        "PCI_BUS_ID",
    )
    assert worker.events("worker.pinned_too_late") == []
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "7"  # the starting process's is untouched
