"""Candidates: which files are ours to process, and the record of one handed on.

Judged by name alone: hidden files and folders, partial downloads, editors'
and sync tools' temp files, lock files, the daemon's own outputs and temp
files, and unsupported types are never candidates. Symlinks and non-files are
the watcher's business.

A Candidate is what crosses from the watcher's thread to the intake: a file
that has stopped changing. It lives here, not in the watcher, so the intake
and the supervisor can name it without importing watchdog.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from daemon.outputs.paths import OUTPUT_SUFFIXES, TEMP_SUFFIX

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".pdf"}
)
# OUTPUT_SUFFIXES: every format's NAME.ocr.<format> and the error sidecar, so
# that a searchable `scan.pdf.ocr.pdf` is never OCRed again.
__all__ = ["OUTPUT_SUFFIXES", "SUPPORTED_SUFFIXES", "is_ignored", "name_reason", "parts_reason"]
# daemon.outputs.writing writes ".<name>.<random>.ocr-inbox.tmp" and renames it into place.
OWN_TEMP_SUFFIX = TEMP_SUFFIX
_PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".filepart")
_TEMPORARY_SUFFIXES = (".tmp", ".temp", "~")


def name_reason(name: str) -> str | None:
    lowered = name.lower()
    if name.startswith(".") and lowered.endswith(OWN_TEMP_SUFFIX):
        return "own_temp"
    if lowered.endswith(OUTPUT_SUFFIXES):
        return "own_output"
    if name.startswith(("~$", ".~lock")):
        return "lock_file"
    if lowered.startswith((".syncthing.", "~syncthing~")):
        return "sync_temp"
    if name.startswith("."):
        return "hidden"
    if lowered.endswith(_PARTIAL_SUFFIXES):
        return "partial"
    if lowered.endswith(_TEMPORARY_SUFFIXES):
        return "temporary"
    if os.path.splitext(lowered)[1] not in SUPPORTED_SUFFIXES:
        return "unsupported_type"
    return None


def parts_reason(parts: tuple[str, ...] | list[str]) -> str | None:
    if not parts:
        return "not_a_file"
    if any(folder.startswith(".") for folder in parts[:-1]):
        return "hidden"
    return name_reason(parts[-1])


def is_ignored(path: Path, inbox: Path | None = None) -> str | None:
    """Why a path is not ours (a short reason string), or None when it is a candidate by name.

    Hidden means any component under the inbox starts with '.': with `inbox`
    those are the components of path relative to it; without, every component
    of a relative path, and only the name of an absolute one (the folders above
    an inbox may well be hidden, e.g. ~/.local/inbox). Judged by name only:
    symlinks and non-files are the watcher's business.
    """
    if inbox is not None:
        try:
            parts = path.relative_to(inbox).parts
        except ValueError:
            return "outside_inbox"
    elif path.is_absolute():
        parts = (path.name,)
    else:
        parts = path.parts
    return parts_reason(parts)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file that has stopped changing, handed on to the supervisor."""

    path: Path  # absolute, inside `inbox`
    inbox: Path  # the inbox root it was found under: os.path.abspath of the configured path
    size: int
    mtime_ns: int
    # The watcher's clock (time.monotonic unless injected) when this file was
    # first seen in this round of settling: the settle time is now - first_seen.
    first_seen: float | None = None
