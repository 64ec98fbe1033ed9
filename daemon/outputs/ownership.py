"""Which files beside an input are ours, and what our outputs on disk record.

A file the daemon did not write is never overwritten or removed. Our JSON
files say `"generator": "ocr-inbox"`; every other output is ours when its
SHA-256 is one our `.ocr.json` lists (under `"outputs"`) or the journal noted
before the set was committed. Symlinks are never written through: rename
replaces a link itself, so a link at an output path counts as not ours.

The `.ocr.json` is the record of a finished file: the set is complete when
every output it lists is on disk with the listed hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from daemon.outputs.paths import FORMAT_SUFFIXES, GENERATOR, OutputError, OutputPaths

# Our JSON files are small; refuse to parse something huge that only shares the name.
MAX_OWNED_JSON_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recorded:
    """What our outputs on disk say was done for an input."""

    outcome: Literal["done", "failed"]
    sha256: str


def regular_file(path: Path) -> os.stat_result | None:
    """lstat of a plain file; None when absent. Links and folders raise not_ours."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise OutputError("not_ours", path, f"output path is {kind}; not writing through it")
    return info


def read_owned_json(path: Path) -> dict[str, Any] | None:
    """Our JSON output at path, or None when absent or not ours."""
    try:
        info = regular_file(path)
    except OutputError:
        return None
    if info is None or info.st_size > MAX_OWNED_JSON_BYTES:
        return None
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if isinstance(payload, dict) and payload.get("generator") == GENERATOR:
        return payload
    return None


def file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def listed_outputs(payload: dict[str, Any] | None) -> dict[str, str]:
    """format -> sha256 of the outputs (other than itself) that our JSON lists.

    A JSON written before the formats existed vouches for its Markdown only.
    """
    if payload is None:
        return {}
    listed: dict[str, str] = {}
    outputs = payload.get("outputs")
    if isinstance(outputs, dict):
        for format, entry in outputs.items():
            digest = entry.get("sha256") if isinstance(entry, dict) else None
            if format in FORMAT_SUFFIXES and format != "json" and isinstance(digest, str):
                listed[format] = digest
    elif isinstance(payload.get("markdown_sha256"), str):
        listed["md"] = payload["markdown_sha256"]
    return listed


def is_ours(path: Path, known_hashes: Iterable[str]) -> bool:
    """Whether we may replace or remove the file at `path` (true when it is absent)."""
    if regular_file(path) is None:
        return True
    digest = file_sha256(path)
    return digest is not None and digest in set(known_hashes)


def recorded(source: Path, paths: OutputPaths | None = None) -> Recorded | None:
    """The outcome our outputs record for `source`, if a complete set is on disk."""
    paths = paths or OutputPaths.beside(source)
    payload = read_owned_json(paths.json)
    if payload is not None:
        sha = payload.get("input", {}).get("sha256")
        listed = listed_outputs(payload)
        complete = all(file_sha256(paths.of(format)) == digest for format, digest in listed.items())
        if isinstance(sha, str) and complete:
            return Recorded("done", sha)
    error = read_owned_json(paths.error)
    if error is not None:
        sha = error.get("input", {}).get("sha256")
        if isinstance(sha, str):
            return Recorded("failed", sha)
    return None
