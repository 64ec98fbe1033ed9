"""Finding the system tools some tests drive (systemd-analyze, promtool, ...).

On a developer's machine a missing tool skips the test. CI installs the tools
and sets REQUIRE_SYSTEM_TOOLS=1, where a missing tool fails the test instead:
a check that silently skips everywhere protects nothing.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ENV = "REQUIRE_SYSTEM_TOOLS"


def tools_required() -> bool:
    """Whether this run promised that every system tool is installed."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of executable `name`; skips the test without it, or fails under REQUIRE_SYSTEM_TOOLS=1."""
    path = shutil.which(name)
    if path is not None:
        return path
    unavailable(f"{name} is not installed")


def unavailable(message: str) -> NoReturn:
    """Skip the test for lack of something the system provides; fail under REQUIRE_SYSTEM_TOOLS=1."""
    if tools_required():
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(message)
