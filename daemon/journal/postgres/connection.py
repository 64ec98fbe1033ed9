"""Reaching PostgreSQL: the URL and its password, errors that are final or passing, retrying.

The password comes from the URL, from libpq's own sources (PGPASSWORD, a
~/.pgpass or PGPASSFILE), or from a credential file (`state.password_file`,
or systemd's LoadCredential= as $CREDENTIALS_DIRECTORY/ocr-inbox-state-password).
It is never logged: every message that shows the URL shows `redact(url)`, and
every error text passes through `scrub` first.

A database that is down or restarting is a passing state: the daemon keeps
its place and tries again with backoff inside the process (systemd's start
limit would give up on a service that exits and restarts every few seconds).
A URL that cannot work (bad syntax, wrong credentials, no such database or
role) is final: JournalUnusable, which the command line turns into exit 2.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import structlog
from psycopg import conninfo

from daemon.journal.interface import JournalUnusable

log = structlog.get_logger("daemon.journal.postgres")

CREDENTIAL_NAME = "ocr-inbox-state-password"
CONNECT_TIMEOUT_SECONDS = 5
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 15.0

# SQLSTATEs that no retry will fix (PostgreSQL appendix A).
_FINAL_STATES = {
    "28P01": "wrong password",
    "28000": "authorization refused",
    "3D000": "no such database",
    "42501": "not allowed",
}
_FINAL_MESSAGES = {
    "password authentication failed": "wrong password",
    "no password supplied": "no password given",
    "does not exist": "no such database or role",
    "no pg_hba.conf entry": "this host is not allowed in",
    "permission denied": "not allowed",
    # libpq's own checks of the URL's options (a bad sslmode=...): never passing.
    "invalid connection option": "not a valid PostgreSQL URL",
    "invalid sslmode value": "not a valid PostgreSQL URL",
    "invalid integer value": "not a valid PostgreSQL URL",
    "invalid URI": "not a valid PostgreSQL URL",
}

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_password(password_file: Path | None) -> str | None:
    """The password from the configured file, else systemd's credential, else None (libpq looks)."""
    candidates = [password_file] if password_file is not None else []
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidates.append(Path(credentials) / CREDENTIAL_NAME)
    for path in candidates:
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if path == password_file:
                raise JournalUnusable(f"state.password_file {path} does not exist") from None
        except OSError as error:
            raise JournalUnusable(f"cannot read the password file {path}: {error}") from error
    return None


def check_url(url: str) -> None:
    """Raise JournalUnusable unless libpq can parse the URL."""
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise JournalUnusable(f"{redact(url)} is not a valid PostgreSQL URL: {error}") from None


class Database:
    """How to open a connection, and the patience to wait for a server that is away."""

    def __init__(
        self, url: str, password: str | None, application_name: str, *, patient: bool = True
    ) -> None:
        check_url(url)
        self.url = url
        self.shown = redact(url)
        self._password = password
        self._application_name = application_name[:63]
        self.patient = patient  # False: a passing error is raised at once (`ocr-inbox status`)
        self._lock = threading.Lock()
        self._problem: str | None = None
        self.on_wait: Callable[[str], None] | None = None  # told each time the daemon waits

    @property
    def problem(self) -> str | None:
        """Why the database cannot be used right now (None when it can); read from any thread."""
        with self._lock:
            return self._problem

    def _set_problem(self, text: str | None) -> None:
        with self._lock:
            previous, self._problem = self._problem, text
        if text is None and previous is not None:
            log.info("journal.reconnected", url=self.shown)

    def scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        parsed = urlsplit(self.url).password
        return text.replace(parsed, "***") if parsed else text

    def open_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """One try at a connection (autocommit); raises psycopg.OperationalError when it fails."""
        target = self.url
        if self._password is not None:
            target = conninfo.make_conninfo(self.url, password=self._password)
        return psycopg.connect(
            target,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=self._application_name,
            # A server that vanished without closing is noticed in about 20 s
            # rather than when the kernel gives up.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=2,
        )

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """One connection, waiting as long as it takes for a passing failure (if patient)."""
        delay = BACKOFF_FIRST_SECONDS
        while True:
            try:
                connection = self.open_connection()
            except psycopg.OperationalError as error:
                self._final_or_raise(error)
                if not self.patient:
                    raise
                self.wait(self.scrub(str(error)).strip(), delay)
                delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                continue
            self._set_problem(None)
            return connection

    def raise_if_final(self, error: psycopg.Error) -> None:
        """Raise JournalUnusable when `error` is one no retry will fix."""
        self._final_or_raise(error)

    def _final_or_raise(self, error: psycopg.Error) -> None:
        text = self.scrub(str(error)).strip()
        reason = _FINAL_STATES.get(error.sqlstate or "")
        if reason is None:
            reason = next((why for part, why in _FINAL_MESSAGES.items() if part in text), None)
        if reason is not None:
            raise JournalUnusable(f"{self.shown}: {reason}: {text}") from None

    def wait(self, reason: str, delay: float) -> None:
        """Note why the database is away, tell whoever listens, sleep a jittered `delay`."""
        first = self.problem is None
        self._set_problem(reason)
        log.warning(
            "journal.unreachable" if first else "journal.still_unreachable",
            url=self.shown,
            error=reason,
            retry_in_seconds=round(delay, 2),
        )
        if self.on_wait is not None:
            self.on_wait(reason)
        time.sleep(delay * random.uniform(0.8, 1.2))


def is_connection_error(error: BaseException) -> bool:
    """The connection broke (server restarted, network gone), as opposed to a bad statement."""
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    # "terminating connection due to administrator command" (a fast shutdown).
    return isinstance(error, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow)
