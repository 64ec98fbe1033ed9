"""The ledger: each outcome recorded in the journal, the outputs, the metrics and the log, and nowhere else."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.journal.interface import ClaimLost, FileKey, Journal, State
from daemon.journal.sqlite import SqliteJournal
from daemon.observing.metrics import Metrics
from daemon.outputs.writing import OutputError, OutputPaths
from daemon.protocol import Fault
from daemon.supervising import ledger as ledger_module
from daemon.supervising.ledger import Ledger
from daemon.tasks import FileTask
from tests.supervising.fakes import FakeClock, result_of

DAEMON = Path(__file__).resolve().parents[2] / "daemon"


def admitted(ledger: Ledger, path: Path) -> FileTask:
    """A file admitted to the journal and claimed, as the flow does before a worker reads it."""
    path.write_bytes(b"page")
    task = FileTask(path, path.parent, "a" * 64, 4, path.stat().st_mtime_ns, 0.0, 0.0)
    ledger.admit(task.key, task.size, task.mtime_ns, task.sha256)
    assert ledger.claim(task)
    return task


def make(clock: FakeClock | None = None, *, keep_final: bool = False) -> Ledger:
    return Ledger(
        SqliteJournal.open(None), Metrics(), clock or FakeClock(), 2, 30.0, keep_final=keep_final
    )


def test_a_failed_file_gets_its_sidecar_and_is_quarantined(tmp_path: Path) -> None:
    """failed(): the error sidecar, the journal row failed for this content, the metric and the log line."""
    ledger = make()
    task = admitted(ledger, tmp_path / "bad.png")
    with capture_logs() as logs:
        ledger.failed(task, Fault(kind="bad_input", message="corrupt"), None, "m", "cannot read")
    sidecar = json.loads(OutputPaths.beside(task.path).error.read_text())
    assert (sidecar["error"]["message"], sidecar["error"]["summary"]) == ("corrupt", "cannot read")
    entry = ledger.journal.get(task.key)
    assert entry is not None and entry.state is State.FAILED and entry.error == "corrupt"
    assert ledger.metrics.files.labels(inbox=task.inbox_name, outcome="failed")._value.get() == 1
    assert [entry["event"] for entry in logs] == ["file.failed"]


def test_a_sidecar_refused_by_a_full_disk_is_written_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal says failed at once; the sidecar follows retry_seconds later, if still wanted."""
    clock = FakeClock()
    ledger = make(clock)
    task = admitted(ledger, tmp_path / "bad.png")
    other = admitted(ledger, tmp_path / "other.png")
    real_write = ledger_module.write_failure
    full = [True]

    def write_failure(source: Path, *args: Any, **kwargs: Any) -> Any:
        # A stand-in for a full disk: ENOSPC cannot be had on command here.
        if full[0]:
            raise OutputError("no_space", source, "No space left on device")
        return real_write(source, *args, **kwargs)

    monkeypatch.setattr(ledger_module, "write_failure", write_failure)
    for item in (task, other):
        ledger.failed(item, Fault(kind="bad_input", message="corrupt"), None, None, "no")
    assert ledger.journal.get(task.key).state is State.FAILED
    ledger.admit(other.key, 5, 5, "b" * 64)  # other's content changed meanwhile
    full[0] = False
    ledger.retry_sidecars(clock.now + 29)
    assert not OutputPaths.beside(task.path).error.exists()
    with capture_logs() as logs:
        ledger.retry_sidecars(clock.now + 30)
    assert OutputPaths.beside(task.path).error.exists()
    assert not OutputPaths.beside(other.path).error.exists()  # no longer that content's
    assert [entry["file"] for entry in logs if entry["event"] == "file.error_written"] == [
        str(task.path)
    ]


def test_an_unreadable_file_gets_one_sidecar_and_no_journal_row(tmp_path: Path) -> None:
    """A file that cannot be read is said so once (a sidecar), and not journaled: rescans retry it."""
    ledger = make()
    path = tmp_path / "locked.png"
    path.write_bytes(b"x")
    task = FileTask(path, tmp_path, "", 1, 1, 0.0, 0.0)
    with capture_logs() as logs:
        ledger.unreadable(task, "Permission denied")
        ledger.unreadable(task, "Permission denied")
    assert [entry["event"] for entry in logs] == ["file.failed"]
    code = json.loads(OutputPaths.beside(path).error.read_text())["error"]["code"]
    assert code == "unreadable"
    assert ledger.journal.counts() == {}


def test_once_keeps_each_outcome_and_the_daemon_keeps_none(tmp_path: Path) -> None:
    """`once` needs every file's outcome for its exit code; a daemon must not grow by each file."""
    for keep_final, expected in ((True, {"done"}), (False, set())):
        ledger = make(keep_final=keep_final)
        task = admitted(ledger, tmp_path / f"{keep_final}.png")
        assert ledger.done(task, result_of(task.path, "m"), "m") is None
        assert set(ledger.final.values()) == expected


def test_done_without_the_claim_writes_nothing(tmp_path: Path) -> None:
    """Outputs land only under the file's claim: without it, ClaimLost and an untouched folder."""
    ledger = make()
    task = admitted(ledger, tmp_path / "scan.png")
    ledger.let_go(task)
    with pytest.raises(ClaimLost):
        ledger.done(task, result_of(task.path, "m"), "m")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scan.png"]
    assert ledger.journal.get(task.key).state is State.PENDING


def test_only_the_ledger_writes_the_journal() -> None:
    """No module of daemon/ but the ledger (and its outcome and webhook room, announcing) calls a journal method that changes state."""
    writes = {
        name
        for name, member in vars(Journal).items()
        if callable(member) and not name.startswith("_")
    } - {
        "get",
        "pending",
        "counts",
        "is_final",
        "takeable",
        "departed",
        "problem",
        "leases",
        "close",
    }
    assert {"admit", "claim", "mark_done", "mark_failed", "forget", "record_attempt"} <= writes
    callers = set()
    for module in DAEMON.rglob("*.py"):
        if module.relative_to(DAEMON).parts[0] == "journal":
            continue  # the backends themselves
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in writes
                and "journal" in ast.unparse(node.func.value)
            ):
                callers.add(module.relative_to(DAEMON).as_posix())
    assert callers == {"supervising/ledger.py", "supervising/announcing.py"}


def test_keys_name_the_inbox_and_the_path_below_it(tmp_path: Path) -> None:
    """A task is known to the journal by its inbox's name and relative path, not its absolute path."""
    inbox = tmp_path / "scans"
    task = FileTask(inbox / "2024" / "a.png", inbox, "a" * 64, 1, 1, 0.0, 0.0)
    assert task.key == FileKey("scans", "2024/a.png")
    once = FileTask(tmp_path / "a.png", Path("/"), "a" * 64, 1, 1, 0.0, 0.0)
    assert once.key == FileKey("/", (tmp_path / "a.png").as_posix().lstrip("/"))
