"""The watcher's side of its boundary with the intake: each content handed on once.

The watcher hands a settled file on through `on_stable`, after asking
`already_final` whether the journal has its outcome already; both are
callables typed on Candidate (daemon.watching.candidates), implemented by the
intake and the journal. What was handed on and is not known final yet is
remembered here, so a rescan does not hand a queued file on again. Used on
the watcher's thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from daemon.watching.candidates import Candidate
from daemon.watching.stability import FileState

log = structlog.get_logger(__name__)


class Handoff:
    def __init__(
        self,
        on_stable: Callable[[Candidate], None],
        already_final: Callable[[Candidate], bool],
    ) -> None:
        self._on_stable = on_stable
        self._already_final = already_final
        # path -> FileState.content_key of what was handed on; pruned by full scans.
        self._handed: dict[Path, tuple[int, int, int, int]] = {}

    def handed(self, path: Path, state: FileState) -> bool:
        """This content was handed on and is not known final yet: the supervisor has it."""
        return self._handed.get(path) == state.content_key

    def is_final(self, candidate: Candidate) -> bool:
        """The journal has this exact file's outcome (and it need not be remembered)."""
        try:
            final = self._already_final(candidate)
        except Exception:
            # The journal's problem must not stop the watcher; the file gets
            # handed on and the supervisor decides.
            log.exception("watch.already_final_failed", path=str(candidate.path))
            return False
        if final:
            self._handed.pop(candidate.path, None)
        return final

    def hand_on(self, candidate: Candidate, state: FileState) -> None:
        log.info(
            "watch.stable", path=str(candidate.path), size=state.size, inbox=str(candidate.inbox)
        )
        try:
            self._on_stable(candidate)
        except Exception:
            log.exception("watch.handoff_failed", path=str(candidate.path))
            return
        self._handed[candidate.path] = state.content_key

    def under(self, top: str) -> set[Path]:
        """The handed-on paths below `top` (a full scan forgets those it does not find)."""
        return {path for path in self._handed if path.is_relative_to(top)}

    def forget(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._handed.pop(path, None)
