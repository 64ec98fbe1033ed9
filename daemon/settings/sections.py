"""The settings tables every part of the daemon reads: watching, state, limits,
workers, recovery, outputs, metrics and logs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Section(BaseModel):
    """A settings table: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def inbox_root(path: Path) -> Path:
    """An inbox as the daemon holds it: absolute, symlinks kept (a share mounted
    through a link keeps the name it was configured with)."""
    return Path(os.path.abspath(path))


def inbox_name(path: Path) -> str:
    """The name an inbox of the `[watch] inboxes` list goes by: its folder's last
    path component ("/" for the root). The journal knows a file by this name and
    its path relative to the inbox, so hosts that mount one share at different
    places agree on it."""
    return inbox_root(path).name or "/"


class WatchSettings(Section):
    inboxes: list[Path] = Field(default_factory=lambda: [Path("./inbox")], min_length=1)
    recursive: bool = False
    mode: Literal["native", "polling"] = "native"
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    settle_seconds: float = Field(default=2.0, ge=0)
    rescan_interval_seconds: float = Field(default=300.0, gt=0)
    create_missing: bool = True

    @model_validator(mode="after")
    def _inbox_names_distinct(self) -> WatchSettings:
        roots: dict[str, Path] = {}
        for path in self.inboxes:
            name, root = inbox_name(path), inbox_root(path)
            other = roots.setdefault(name, root)
            if other != root:
                raise ValueError(
                    f"inboxes: {other} and {root} would both be named {name!r} (an inbox is"
                    " named after its folder's last component, and the journal knows each"
                    " file by that name); rename or move one of the folders"
                )
        return self

    def named_inboxes(self) -> dict[str, Path]:
        """Each inbox's name and root (see inbox_name)."""
        return {inbox_name(path): inbox_root(path) for path in self.inboxes}


class StateSettings(Section):
    dir: Path = Path("./.state")
    # Empty: the journal is a SQLite file in `dir`, for one daemon. A
    # postgresql:// URL: one journal shared by every daemon pointing at it.
    url: str = ""
    # A file holding the database's password (when the URL has none); libpq's
    # PGPASSWORD and ~/.pgpass work too.
    password_file: str = ""
    # This daemon's name in the journal, logs, outputs and metrics. Empty: the
    # host's name and a hash of `dir` (daemon.journal.opening.default_node).
    node: str = Field(default="", pattern=r"^[A-Za-z0-9_.:@-]{0,100}$")
    # How long a claim outlives its daemon's last heartbeat (every third of it).
    lease_seconds: float = Field(default=30.0, ge=0.3, le=86400)

    @model_validator(mode="after")
    def _url_is_postgresql(self) -> StateSettings:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url must be empty (SQLite in state.dir) or a postgresql:// URL")
        return self


class LimitsSettings(Section):
    max_file_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_pages: int = Field(default=500, gt=0)
    max_page_pixels: int = Field(default=40_000_000, gt=0)
    hard_max_page_pixels: int = Field(default=178_956_970, gt=0)
    pdf_dpi: int = Field(default=200, ge=36, le=1200)
    page_deadline_seconds: float = Field(default=300.0, gt=0)
    load_deadline_seconds: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> LimitsSettings:
        if self.max_page_pixels > self.hard_max_page_pixels:
            raise ValueError("max_page_pixels must not exceed hard_max_page_pixels")
        return self


# One device for every worker, or "all" (every visible GPU, one worker each).
SharedDevice = Annotated[str, Field(pattern=r"^(auto|cpu|all|cuda(:\d+)?)$")]
# One worker per listed GPU, each pinned to it (daemon.devices).
ListedGpu = Annotated[str, Field(pattern=r"^cuda:\d+$")]


class WorkerSettings(Section):
    chain: list[str] = Field(default_factory=lambda: ["rapid"], min_length=1)
    device: SharedDevice | Annotated[list[ListedGpu], Field(min_length=1, max_length=16)] = "auto"
    # 0: one worker per GPU of a list (or of "all"), else one.
    count: int = Field(default=0, ge=0, le=16)
    threads: int = Field(default=0, ge=0)
    allow_download: bool = False

    @field_validator("device")
    @classmethod
    def _each_gpu_once(cls, device: str | list[str]) -> str | list[str]:
        if isinstance(device, list) and len(set(device)) != len(device):
            raise ValueError(
                "lists a GPU twice: one worker runs per listed GPU (for several workers"
                ' on one GPU, name it alone, e.g. "cuda:0", and set worker.count)'
            )
        return device

    @field_validator("count")
    @classmethod
    def _count_matches_the_list(cls, count: int, info: ValidationInfo) -> int:
        device = info.data.get("device")
        if isinstance(device, list) and count and count != len(device):
            raise ValueError(
                f"worker.count = {count} contradicts worker.device, which lists"
                f" {len(device)} GPU(s) ({', '.join(device)}): one worker runs per listed"
                f" GPU; leave worker.count at 0 or set it to {len(device)}"
            )
        return count


class RecoverySettings(Section):
    max_fatal_failures: int = Field(default=3, ge=1)
    failure_window_seconds: float = Field(default=600.0, gt=0)
    cooldown_seconds: float = Field(default=600.0, ge=0)
    attempts_per_model: int = Field(default=2, ge=1)
    oom_retries: int = Field(default=2, ge=0)
    oom_scale: float = Field(default=0.7, gt=0, lt=1)
    backoff_cap_seconds: float = Field(default=30.0, ge=0)
    stop_grace_seconds: float = Field(default=10.0, gt=0)
    idle_fallback_seconds: float = Field(default=120.0, gt=0)
    max_worker_rss_megabytes: int = Field(default=0, ge=0)


OutputFormat = Literal["md", "json", "txt", "hocr", "pdf"]


def _default_formats() -> list[OutputFormat]:
    return ["md", "json"]


class OutputSettings(Section):
    # What is written for each input: NAME.ocr.<format>. The JSON is the
    # daemon's record of a finished file (it lists the set and proves it ours),
    # so it is always part of the set.
    formats: list[OutputFormat] = Field(default_factory=_default_formats, min_length=1)
    # A PDF page that already has a text layer keeps it alone unless this is on.
    pdf_text_over_existing_text: bool = False
    json_indent: int | None = 2
    retry_seconds: float = Field(default=30.0, gt=0)
    # Completion webhooks (daemon.webhooks): a JSON POST per finished file to
    # this URL, for every inbox (an inbox's profile may name its own). None: none.
    webhook_url: str | None = None
    # One attempt's bound (connecting, sending, reading the answer): a receiver
    # that hangs costs the sending thread this long, never the OCR.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # While a receiver fails, attempts wait 1, 2, 4 ... seconds, at most this
    # (a Retry-After it sends is honoured instead, up to an hour).
    webhook_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    # Events kept in the journal for delivery; beyond it the oldest is dropped.
    webhook_queue_limit: int = Field(default=10_000, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_http(cls, url: str | None) -> str | None:
        return check_webhook_url(url)

    @model_validator(mode="after")
    def _json_is_the_record(self) -> OutputSettings:
        check_formats(self.formats)
        return self


def check_formats(formats: Sequence[str]) -> None:
    """A set of output formats as the settings accept it ([outputs] and each inbox's own)."""
    if "json" not in formats:
        raise ValueError(
            'formats must include "json": the .ocr.json is the daemon\'s record that a'
            " file is done and which outputs are its own"
        )
    if len(set(formats)) != len(formats):
        raise ValueError("formats lists a format twice")


def check_webhook_url(url: str | None) -> str | None:
    """A webhook URL as the settings accept it: http or https with a host ("" means none)."""
    if url is None or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        raise ValueError(f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The message must not repeat the URL: it may hold a password.
        raise ValueError("a webhook URL must start with http:// or https:// and name a host")
    return url.strip()


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
