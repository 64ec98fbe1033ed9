"""The files a build of the ocr-inbox package reads, copied out of the checkout.

Building from a copy keeps setuptools' build/ and *.egg-info folders out of
the checkout (and out of the way of anyone working in it), and builds exactly
what the wheel contains: pyproject.toml, README.md (the package's long
description) and the `daemon` package. The digest of those files tells
whether a prebuilt wheel still matches the checkout.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("pyproject.toml", "README.md")
PACKAGE_DIRS = ("daemon",)
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")


def stage(destination: Path, repo: Path = REPO) -> Path:
    """Copy what a build of the package needs into `destination` (created) and return it."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_FILES:
        shutil.copy2(repo / name, destination / name)
    for name in PACKAGE_DIRS:
        shutil.copytree(repo / name, destination / name, ignore=_SKIPPED, dirs_exist_ok=True)
    return destination


def source_digest(repo: Path = REPO) -> str:
    """SHA-256 over the package's files (names and contents), in a stable order."""
    digest = hashlib.sha256()
    paths = [repo / name for name in PACKAGE_FILES]
    for name in PACKAGE_DIRS:
        paths += sorted(
            path
            for path in (repo / name).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        )
    for path in paths:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
