"""The sd_notify protocol against a real datagram socket held by the test."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.observing.systemd_notify import Notifier

RECEIVE_TIMEOUT_SECONDS = 10.0


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str) -> None:
        self.notify_socket = address
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(bind_to)
        self._socket.settimeout(RECEIVE_TIMEOUT_SECONDS)

    def receive(self) -> list[tuple[str, str]]:
        """The next datagram as (key, value) pairs in the order they were sent."""
        data = self._socket.recv(65536)
        text = data.decode("utf-8")
        assert text.endswith("\n"), f"every assignment ends with a newline: {text!r}"
        return [tuple(line.split("=", 1)) for line in text.splitlines()]  # type: ignore[misc]

    def assert_empty(self) -> None:
        """Nothing more was sent."""
        self._socket.settimeout(0.2)
        with pytest.raises(TimeoutError):
            self._socket.recv(65536)
        self._socket.settimeout(RECEIVE_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    bound = NotifyListener(str(tmp_path / "notify"))
    yield bound
    bound.close()


@pytest.fixture
def notifier(listener: NotifyListener) -> Notifier:
    return Notifier({"NOTIFY_SOCKET": listener.notify_socket})


def test_ready_sends_ready_and_status(listener: NotifyListener, notifier: Notifier) -> None:
    """ready() sends READY=1, with STATUS= in the same datagram when given."""
    notifier.ready()
    assert listener.receive() == [("READY", "1")]
    notifier.ready("watching 2 inboxes")
    assert listener.receive() == [("READY", "1"), ("STATUS", "watching 2 inboxes")]


def test_status_sends_one_line(listener: NotifyListener, notifier: Notifier) -> None:
    """status() sends STATUS=; a newline in the text cannot start a second assignment."""
    notifier.status("loading model qwen")
    assert listener.receive() == [("STATUS", "loading model qwen")]
    notifier.status("scan\nREADY=1.png waiting")
    assert listener.receive() == [("STATUS", "scan READY=1.png waiting")]


def test_extend_timeout_in_microseconds(listener: NotifyListener, notifier: Notifier) -> None:
    """extend_timeout() sends EXTEND_TIMEOUT_USEC= in whole microseconds."""
    notifier.extend_timeout(90)
    assert listener.receive() == [("EXTEND_TIMEOUT_USEC", "90000000")]
    notifier.extend_timeout(0.25)
    assert listener.receive() == [("EXTEND_TIMEOUT_USEC", "250000")]


def test_watchdog_sends_ping(listener: NotifyListener, notifier: Notifier) -> None:
    """watchdog() sends WATCHDOG=1."""
    notifier.watchdog()
    assert listener.receive() == [("WATCHDOG", "1")]


def test_reloading_sends_monotonic_timestamp(listener: NotifyListener, notifier: Notifier) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC= read from CLOCK_MONOTONIC."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = listener.receive()
    assert [key for key, _ in fields] == ["RELOADING", "MONOTONIC_USEC"]
    assert fields[0] == ("RELOADING", "1")
    assert before <= int(fields[1][1]) <= after


def test_stopping_sends_stopping(listener: NotifyListener, notifier: Notifier) -> None:
    """stopping() sends STOPPING=1, with STATUS= when given."""
    notifier.stopping()
    assert listener.receive() == [("STOPPING", "1")]
    notifier.stopping("finishing scan.pdf")
    assert listener.receive() == [("STOPPING", "1"), ("STATUS", "finishing scan.pdf")]


def test_send_raw_fields_in_order(listener: NotifyListener, notifier: Notifier) -> None:
    """send() puts every field in one datagram in the given order and reports success."""
    assert notifier.send(STATUS="x", ERRNO="5", BUSERROR="org.example.Failed") is True
    assert listener.receive() == [
        ("STATUS", "x"),
        ("ERRNO", "5"),
        ("BUSERROR", "org.example.Failed"),
    ]


def test_send_rejects_lowercase_field_names(notifier: Notifier) -> None:
    """A field name systemd would not understand is a programming error, raised at once."""
    with pytest.raises(ValueError, match="status"):
        notifier.send(status="x")


def test_abstract_socket_name() -> None:
    """A NOTIFY_SOCKET starting with @ reaches a socket in the abstract namespace."""
    bound = NotifyListener(f"@ocr-inbox-test-{uuid.uuid4().hex}")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": bound.notify_socket})
        assert notifier.enabled
        notifier.ready("up")
        assert bound.receive() == [("READY", "1"), ("STATUS", "up")]
    finally:
        bound.close()


def test_disabled_without_notify_socket() -> None:
    """Without NOTIFY_SOCKET every call is a silent no-op and send() reports False."""
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert notifier.enabled is False
    assert notifier.watchdog_interval is None
    notifier.ready("up")
    notifier.status("x")
    notifier.extend_timeout(10)
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    assert notifier.send(READY="1") is False


def test_default_environment_is_read() -> None:
    """With no mapping given, the process environment decides (NOTIFY_SOCKET unset here)."""
    if "NOTIFY_SOCKET" in os.environ:
        pytest.skip("this test run itself is under systemd notification")
    assert Notifier().enabled is False


def test_unsupported_address_disables() -> None:
    """A NOTIFY_SOCKET that is not a path or @name (e.g. vsock:) leaves the notifier off."""
    notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert notifier.enabled is False
    assert notifier.watchdog_interval is None
    assert notifier.send(READY="1") is False


def test_missing_socket_returns_false_without_raising(tmp_path: Path) -> None:
    """Sending to a socket path nobody listens on returns False, repeatedly, and never raises."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert notifier.send(READY="1") is False
    notifier.watchdog()
    assert notifier.send(WATCHDOG="1") is False


def test_recovers_when_socket_appears(tmp_path: Path) -> None:
    """After a failed send, a later send succeeds once the socket is there."""
    address = tmp_path / "late"
    notifier = Notifier({"NOTIFY_SOCKET": str(address)})
    assert notifier.send(STATUS="early") is False
    bound = NotifyListener(str(address))
    try:
        assert notifier.send(STATUS="late") is True
        assert bound.receive() == [("STATUS", "late")]
    finally:
        bound.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{pid}"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(
    listener: NotifyListener, environ: dict[str, str], expected: float | None
) -> None:
    """watchdog_interval is half of WATCHDOG_USEC, and None unless the watchdog is for this pid."""
    filled = {key: value.format(pid=os.getpid()) for key, value in environ.items()}
    notifier = Notifier({"NOTIFY_SOCKET": listener.notify_socket, **filled})
    assert notifier.watchdog_interval == expected


def test_concurrent_sends_arrive_whole(listener: NotifyListener, notifier: Notifier) -> None:
    """Sends from several threads each arrive as one intact datagram."""
    senders = [
        threading.Thread(
            target=lambda n=n: [notifier.status(f"thread {n} message {i}") for i in range(3)]
        )
        for n in range(4)
    ]
    for sender in senders:
        sender.start()
    received = [listener.receive() for _ in range(12)]
    for sender in senders:
        sender.join()
    expected = {f"thread {n} message {i}" for n in range(4) for i in range(3)}
    assert {fields[0][1] for fields in received} == expected
    assert all(len(fields) == 1 and fields[0][0] == "STATUS" for fields in received)


def test_send_leaves_no_descriptor_open(listener: NotifyListener, notifier: Notifier) -> None:
    """No notification socket stays open after a send, so none can leak into workers."""
    before = set(os.listdir("/proc/self/fd"))
    notifier.watchdog()
    listener.receive()
    after = set(os.listdir("/proc/self/fd"))
    assert after <= before
