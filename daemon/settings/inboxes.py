"""The `[inboxes.NAME]` tables: one profile per inbox, and the checks a set of inboxes must pass.

A table names an inbox and chooses what differs from the daemon-wide
settings: the chain, the formats, where outputs go, what becomes of an input
once done, how the folder is watched. What a table leaves out comes from
`[watch]`, `[worker]` and `[outputs]`, which is also all an inbox of the
`[watch] inboxes` list gets. `Settings.profiles()` resolves both kinds into
`InboxProfile`s, the one shape the rest of the daemon reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from daemon.settings.sections import (
    OutputFormat,
    Section,
    check_formats,
    check_webhook_url,
    inbox_root,
)

WatchMode = Literal["native", "polling"]


class InboxTable(Section):
    """One `[inboxes.NAME]` table. Unset keys take the daemon-wide value.

    `webhook_url` is where the completion webhook sender posts each finished
    file of this inbox (daemon.webhooks.urls.webhook_url_for).
    """

    path: Path
    chain: list[str] | None = Field(default=None, min_length=1)
    formats: list[OutputFormat] | None = Field(default=None, min_length=1)
    # Outputs go to a mirrored tree here instead of beside the input, so the
    # inbox itself may be read-only.
    output_dir: Path | None = None
    # Once a file's outputs are durable its input moves here (mirrored tree).
    archive_dir: Path | None = None
    # A failed input moves here, its error sidecar with it.
    failed_dir: Path | None = None
    # Remove the input once its outputs are durable; only ever when set.
    delete_after_success: bool = False
    recursive: bool | None = None
    mode: WatchMode | None = None
    settle_seconds: float | None = Field(default=None, ge=0)
    # The instruction given to a vision-language model with each page of this
    # inbox's files (the model's own prompt when unset).
    prompt: str | None = None
    # A JSON POST per finished file of this inbox goes here ([outputs]
    # webhook_url when unset).
    webhook_url: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_http(cls, url: str | None) -> str | None:
        return check_webhook_url(url)

    @model_validator(mode="after")
    def _consistent(self) -> InboxTable:
        if self.formats is not None:
            check_formats(self.formats)
        if self.delete_after_success and self.archive_dir is not None:
            raise ValueError(
                "archive_dir and delete_after_success both say what becomes of a done input;"
                " choose one"
            )
        return self


@dataclass(frozen=True, slots=True)
class InboxProfile:
    """An inbox as the daemon serves it: every value resolved, every folder absolute."""

    name: str
    root: Path  # daemon.settings.inbox_root() of the configured path
    chain: tuple[str, ...]
    formats: tuple[OutputFormat, ...]
    recursive: bool
    mode: WatchMode
    settle_seconds: float
    output_dir: Path | None = None
    archive_dir: Path | None = None
    failed_dir: Path | None = None
    delete_after_success: bool = False
    prompt: str | None = None
    webhook_url: str | None = None
    from_table: bool = False  # an [inboxes.NAME] table, not the [watch] inboxes list

    @property
    def folders(self) -> dict[str, Path]:
        """The folders the daemon writes to outside the inbox, by their key."""
        named = {
            "output_dir": self.output_dir,
            "archive_dir": self.archive_dir,
            "failed_dir": self.failed_dir,
        }
        return {key: folder for key, folder in named.items() if folder is not None}


def _inside(inner: Path, outer: Path) -> bool:
    """Whether `inner` is `outer` or lies below it, by name and by where links lead."""
    for a, b in ((str(inner), str(outer)), (os.path.realpath(inner), os.path.realpath(outer))):
        if a == b or a.startswith(b.rstrip(os.sep) + os.sep):
            return True
    return False


def check_profiles(profiles: Iterable[InboxProfile]) -> None:
    """Refuse a set of inboxes that would feed the daemon its own files (ValueError says which).

    Two inboxes may not overlap (one inside the other: each would take the
    other's files, and its outputs), and no output, archive or failed folder
    may lie inside any inbox (the daemon would find what it wrote there).
    """
    listed = list(profiles)
    for index, first in enumerate(listed):
        for second in listed[index + 1 :]:
            if _inside(first.root, second.root) or _inside(second.root, first.root):
                raise ValueError(
                    f"inboxes {first.name!r} ({first.root}) and {second.name!r} ({second.root})"
                    " overlap: each would take the other's files; give them separate folders"
                )
    for profile in listed:
        for key, folder in profile.folders.items():
            for inbox in listed:
                if _inside(folder, inbox.root) or _inside(inbox.root, folder):
                    raise ValueError(
                        f"inboxes.{profile.name}.{key} ({folder}) and inbox {inbox.name!r}"
                        f" ({inbox.root}) overlap: the daemon would take its own files for"
                        " new input; choose a folder outside every inbox"
                    )


def absolute(path: Path | None) -> Path | None:
    return None if path is None else inbox_root(path)
