"""Error sidecars that could not be written yet (disk full, folder not writable), and when to try again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.journal.interface import FileKey
from daemon.outputs.paths import OutputPaths


@dataclass(frozen=True, slots=True)
class Unwritten:
    path: Path
    key: FileKey
    sha256: str  # the content the sidecar speaks of: a changed file drops it
    payload: dict[str, Any]
    paths: OutputPaths


class UnwrittenSidecars:
    def __init__(self) -> None:
        self._waiting: dict[Path, tuple[float, Unwritten]] = {}

    def hold(self, sidecar: Unwritten, due: float) -> None:
        self._waiting[sidecar.path] = (due, sidecar)

    def take_due(self, now: float) -> list[Unwritten]:
        """The sidecars due by `now`, no longer held (hold one again to retry it later)."""
        due = [sidecar for when, sidecar in self._waiting.values() if when <= now]
        for sidecar in due:
            del self._waiting[sidecar.path]
        return due
