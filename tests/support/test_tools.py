"""The skip-or-fail rule for missing system tools."""

from __future__ import annotations

import os

import pytest

from tests.support.tools import REQUIRE_ENV, require_tool

MISSING = "ocr-inbox-no-such-tool"


def test_present_tool_returns_its_path() -> None:
    """A tool on PATH is returned as an absolute path to an executable."""
    path = require_tool("sh")
    assert os.path.isabs(path)
    assert os.access(path, os.X_OK)


def test_missing_tool_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without REQUIRE_SYSTEM_TOOLS a missing tool skips the test."""
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_tool(MISSING)


def test_missing_tool_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """With REQUIRE_SYSTEM_TOOLS=1 a missing tool fails the test instead of skipping it."""
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_tool(MISSING)
