"""daemon.observing.systemd_journal: records to a real datagram socket in journald's native protocol."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from daemon.observing import systemd_journal as journald
from tests.support.datagram import socket_path
from tests.support.journal_socket import JournalSocket, decode

REPO = Path(__file__).resolve().parents[2]


def test_field_names_follow_journald_rules() -> None:
    """Keys become upper-case [A-Z0-9_] names, never starting with "_" or a digit."""
    assert journald.field_name("file") == "FILE"
    assert journald.field_name("queue_seconds") == "QUEUE_SECONDS"
    assert journald.field_name("exit-code") == "EXIT_CODE"
    assert journald.field_name("_private") == "PRIVATE"
    assert journald.field_name("9lives") is None
    assert journald.field_name("___") is None
    assert journald.field_name("x" * 100) == "X" * 64


def test_entry_has_message_priority_identifier_and_fields() -> None:
    """The JSON line is MESSAGE; the level sets PRIORITY; each key is a field of its own."""
    record = {
        "event": "file.failed",
        "level": "error",
        "file": "/in/a.png",
        "seconds": 1.5,
        "pages": 2,
        "tried": ["a", "b"],
        "code": None,
        "message": "shadowed",
        "ok": True,
    }
    fields = dict(journald.fields_of('{"event": "file.failed"}', record))

    assert fields["MESSAGE"] == '{"event": "file.failed"}'
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "ocr-inbox"
    assert fields["EVENT"] == "file.failed"
    assert fields["FILE"] == "/in/a.png"
    assert fields["SECONDS"] == "1.5"
    assert fields["PAGES"] == "2"
    assert fields["TRIED"] == '["a", "b"]'
    assert fields["OK"] == "true"
    assert "CODE" not in fields  # None: no field rather than an empty one
    for level, priority in (("debug", "7"), ("info", "6"), ("warning", "4"), ("critical", "2")):
        assert dict(journald.fields_of("", {"level": level}))["PRIORITY"] == priority


def test_values_with_newlines_use_the_binary_form() -> None:
    """A multi-line value (a traceback) is sent length-prefixed and decodes intact."""
    traceback = "Traceback (most recent call last):\n  File x\nValueError: é\n"
    data = journald.encode([("MESSAGE", "one line"), ("EXCEPTION", traceback), ("A", "b=c")])

    assert data.startswith(b"MESSAGE=one line\nEXCEPTION\n")
    assert decode(data) == {"MESSAGE": "one line", "EXCEPTION": traceback, "A": "b=c"}


def test_stream_is_journal_matches_device_and_inode(tmp_path: Path) -> None:
    """Only a $JOURNAL_STREAM naming this very stream's device:inode counts."""
    target = tmp_path / "out"
    other = tmp_path / "other"
    other.write_text("")
    with target.open("w") as stream:
        info = os.fstat(stream.fileno())
        other_ino = other.stat().st_ino
        assert journald.stream_is_journal(
            {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, stream
        )
        assert not journald.stream_is_journal(
            {"JOURNAL_STREAM": f"{info.st_dev}:{other_ino}"}, stream
        )
        assert not journald.stream_is_journal({}, stream)
        assert not journald.stream_is_journal({"JOURNAL_STREAM": "garbage"}, stream)


def test_logger_sends_each_record_as_one_entry(tmp_path: Path) -> None:
    """JournalLogger delivers records to the socket and nothing to the fallback stream."""
    fallback = tmp_path / "stdout"
    with JournalSocket(socket_path(tmp_path, "j.sock")) as journal, fallback.open("w") as stream:
        logger = journald.JournalLogger(journald.JournalSender(str(journal.path)), stream)
        logger.info('{"event": "a"}', record={"event": "a", "level": "info", "file": "/x"})
        logger.error('{"event": "b"}', record={"event": "b", "level": "error"})
        entries = journal.wait_for(lambda entry: True, count=2)

    assert [entry["EVENT"] for entry in entries] == ["a", "b"]
    assert entries[0]["FILE"] == "/x"
    assert entries[1]["PRIORITY"] == "3"
    assert fallback.read_text() == ""
    assert journal.errors == []


def test_entry_too_big_for_a_datagram_goes_as_a_sealed_memfd(tmp_path: Path) -> None:
    """A record over the datagram size limit arrives whole, passed as a sealed memfd."""
    with JournalSocket(socket_path(tmp_path, "j.sock")) as journal:
        sender = journald.JournalSender(str(journal.path))
        huge = "x" * (4 * 1024 * 1024) + "\nend"
        assert sender.send(journald.encode([("MESSAGE", "big"), ("DETAIL", huge)]))
        entry = journal.wait_for(lambda entry: entry.get("MESSAGE") == "big")[0]

    assert entry["DETAIL"] == huge
    assert journal.passed_fds == 1


def test_memfd_is_sealed_against_changes(tmp_path: Path) -> None:
    """journald maps a passed memfd only when it is sealed: check the seals it carries."""
    path = socket_path(tmp_path, "j.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(30)
    try:
        sender = journald.JournalSender(str(path))
        sender._send_as_memfd(sender._connected(), b"MESSAGE=sealed\n")
        data, fds, _, _ = socket.recv_fds(receiver, 1024, 1)
    finally:
        receiver.close()
    assert data == b""
    [fd] = fds
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert os.pread(fd, 100, 0) == b"MESSAGE=sealed\n"
    finally:
        os.close(fd)
    for seal in (fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_WRITE, fcntl.F_SEAL_SEAL):
        assert seals & seal


def test_logger_falls_back_to_stdout_when_the_socket_is_gone(tmp_path: Path) -> None:
    """Without a journal socket the JSON lines go to the fallback stream, every one of them."""
    fallback = tmp_path / "stdout"
    with fallback.open("w") as stream:
        logger = journald.JournalLogger(journald.JournalSender(str(tmp_path / "none")), stream)
        logger.info('{"event": "a"}', record={"event": "a"})
        logger.info('{"event": "b"}', record={"event": "b"})

    assert fallback.read_text() == '{"event": "a"}\n{"event": "b"}\n'


CONFIGURE_AND_LOG = textwrap.dedent(
    """
    import structlog
    from daemon import logs
    logs.configure("info", "auto", role="supervisor")
    structlog.get_logger("t").info("file.done", file="/in/x.png", outcome="done", seconds=0.25)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("t").exception("worker.crashed", model="m")
    """
)


def run_configured(tmp_path: Path, journal_stream: str | None, socket_path: Path) -> Path:
    """Run logs.configure() in a child whose stdout is a file; returns that file."""
    stdout = tmp_path / "stdout.log"
    stdout.write_text("")
    info = stdout.stat()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = str(REPO)
    env[journald.SOCKET_ENV] = str(socket_path)
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream.format(dev=info.st_dev, ino=info.st_ino)
    with stdout.open("a") as out:
        subprocess.run(
            [sys.executable, "-c", CONFIGURE_AND_LOG],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            check=True,
            timeout=60,
        )
    return stdout


def test_configure_under_journal_stream_logs_natively(tmp_path: Path) -> None:
    """With $JOURNAL_STREAM naming stdout, logs.configure() sends records to the journal socket."""
    with JournalSocket(socket_path(tmp_path, "j.sock")) as journal:
        stdout = run_configured(tmp_path, "{dev}:{ino}", journal.path)
        done, crashed = journal.wait_for(lambda entry: True, count=2)

    assert stdout.read_text() == ""
    assert json.loads(done["MESSAGE"])["event"] == "file.done"
    assert (done["EVENT"], done["FILE"], done["OUTCOME"], done["SECONDS"]) == (
        "file.done",
        "/in/x.png",
        "done",
        "0.25",
    )
    assert (done["PRIORITY"], done["LEVEL"], done["ROLE"]) == ("6", "info", "supervisor")
    assert crashed["PRIORITY"] == "3"
    assert "ValueError: boom" in crashed["EXCEPTION"]
    assert "\n" in crashed["EXCEPTION"]
    assert json.loads(crashed["MESSAGE"])["model"] == "m"


def test_configure_with_another_streams_journal_stream_writes_stdout(tmp_path: Path) -> None:
    """An inherited $JOURNAL_STREAM that is not our stdout (output redirected) keeps JSON lines."""
    with JournalSocket(socket_path(tmp_path, "j.sock")) as journal:
        stdout = run_configured(tmp_path, "{dev}:1", journal.path)
        received = journal.snapshot()

    lines = [json.loads(line) for line in stdout.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["file.done", "worker.crashed"]
    assert received == []
