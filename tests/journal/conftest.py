"""Journals of both backends for the contract tests: SQLite in a temp folder, PostgreSQL in the run's cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.journal.interface import Journal
from daemon.journal.opening import open_journal
from daemon.settings.sections import StateSettings

OpenJournal = Callable[..., Journal]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenJournal]:
    """Opens a journal as node `node` (one shared journal per test); closes them all after."""
    opened: list[Journal] = []
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""

    def open_as(node: str = "a", lease_seconds: float = 30.0) -> Journal:
        state = StateSettings(
            dir=tmp_path / "state", url=url, node=node, lease_seconds=lease_seconds
        )
        journal = open_journal(state)
        opened.append(journal)
        return journal

    yield open_as
    for journal in opened:
        journal.close()
