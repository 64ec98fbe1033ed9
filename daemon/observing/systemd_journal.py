"""Log records to journald through its native protocol, with every field a journal field.

Under systemd the daemon's stdout is a stream to the journal, which stores
each JSON line as an opaque MESSAGE: `journalctl OUTCOME=failed` cannot find
it. The native protocol (one datagram per record to the journal's socket,
systemd.journal-fields(7), "Native Journal Protocol") gives each structured
field its own journal field, so operators can filter with journalctl alone
while MESSAGE still carries the whole JSON line.

It is used only when systemd connected stdout to the journal, which systemd
announces by setting $JOURNAL_STREAM to stdout's "device:inode" (a copy of
the variable inherited by a process whose stdout was redirected does not
match, so that process keeps writing lines to its stdout). Spoken directly,
like daemon.observing.systemd_notify, to avoid depending on libsystemd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# Lets tests (and unusual systems) point the daemon at another socket.
SOCKET_ENV = "OCR_INBOX_JOURNAL_SOCKET"
IDENTIFIER = "ocr-inbox"

# syslog(3) priorities, which journalctl -p filters on.
PRIORITIES = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warn": 4,
    "warning": 4,
    "error": 3,
    "err": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}
# Fields this module sets itself; a record key with the same name stays in MESSAGE only.
OWN_FIELDS = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"})
# journald's rule for names a client may set: upper case, digits and "_", not
# starting with "_" (trusted fields) or a digit, at most 64 characters.
_NOT_ALLOWED = re.compile(r"[^A-Z0-9_]")
MAX_NAME = 64
SEND_TIMEOUT_SECONDS = 1.0


def stream_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when $JOURNAL_STREAM names this stream: systemd connected it to the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        expected = (int(device), int(inode))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == expected


def field_name(key: str) -> str | None:
    """The journal field name for a record key ("file" -> "FILE"), or None if it has none."""
    name = _NOT_ALLOWED.sub("_", key.upper()).lstrip("_")
    if not name or name[0].isdigit():
        return None
    return name[:MAX_NAME]


def field_value(value: Any) -> str | None:
    """A record value as journal text: strings as they are, the rest as in the JSON line."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        return str(value)


def fields_of(message: str, record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The journal entry for one record: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then its fields."""
    level = str(record.get("level", "info")).lower()
    fields = [
        ("MESSAGE", message),
        ("PRIORITY", str(PRIORITIES.get(level, 6))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ]
    seen = set(OWN_FIELDS)
    for key, value in record.items():
        name = field_name(str(key))
        text = field_value(value)
        if name is None or text is None or name in seen:
            continue
        seen.add(name)
        fields.append((name, text))
    return fields


def encode(fields: list[tuple[str, str]]) -> bytes:
    """The native protocol's datagram: NAME=value lines, or the length-prefixed form.

    A value holding a newline (a traceback) cannot be a NAME=value line; it is
    sent as NAME, a newline, its length as a little-endian 64-bit integer,
    the bytes, and a newline.
    """
    parts = []
    for name, value in fields:
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSender:
    """Sends encoded entries to the journal's socket; False when it cannot."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, datagram: bytes) -> bool:
        with self._lock:
            try:
                sock = self._connected()
                try:
                    sock.sendto(datagram, self.address)
                except OSError as error:
                    if error.errno != errno.EMSGSIZE:  # bigger than one datagram may be
                        raise
                    self._send_as_memfd(sock, datagram)
            except OSError:
                self._close()
                return False
            return True

    def _connected(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.settimeout(SEND_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def _send_as_memfd(self, sock: socket.socket, datagram: bytes) -> None:
        """A big entry goes as a sealed memfd passed over the socket, as sd_journal_send() does."""
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(datagram)
            while view:
                view = view[os.write(fd, view) :]
            # journald maps a sealed memfd directly; seals prove we cannot change it after.
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            # socket.send_fds() has no address; sendmsg() does. No data, only the fd.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            sock.sendmsg([], rights, 0, self.address)
        finally:
            os.close(fd)

    def _close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


class JournalLogger:
    """A structlog logger: each record to the journal, its JSON line to `fallback` if that fails."""

    def __init__(self, sender: JournalSender, fallback: TextIO) -> None:
        self._sender = sender
        self._fallback = fallback
        self._warned = False
        self._lock = threading.Lock()  # threads (watcher, HTTP) log too: whole lines only

    def msg(self, message: str, record: Mapping[str, Any] | None = None) -> None:
        if self._sender.send(encode(fields_of(message, record or {}))):
            return
        with self._lock:
            if not self._warned:
                # Said once (and not through ourselves): the lines still reach stdout.
                self._warned = True
                print(
                    f"ocr-inbox: cannot log to the journal socket {self._sender.address}; "
                    "writing JSON lines to stdout",
                    file=sys.stderr,
                    flush=True,
                )
            self._fallback.write(message + "\n")
            self._fallback.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def renderer(render_json: Callable[[Any, str, dict[str, Any]], Any]) -> Any:
    """A final structlog processor: the JSON line plus the record for JournalLogger."""

    def processor(logger: Any, name: str, record: dict[str, Any]) -> Any:
        line = render_json(logger, name, dict(record))
        return (line,), {"record": record}

    return processor


def logger_factory(environ: Mapping[str, str], fallback: TextIO) -> Callable[..., JournalLogger]:
    # One logger for the process: structlog asks the factory on every call
    # (loggers are not cached), and the socket and the one warning are shared.
    logger = JournalLogger(JournalSender(environ.get(SOCKET_ENV) or JOURNAL_SOCKET), fallback)

    def factory(*_args: Any) -> JournalLogger:
        return logger

    return factory
