"""Write NAME.ocr.md / NAME.ocr.json, or NAME.ocr.error.json, beside the input.

Every write is a temp file in the same folder (hidden, so the watcher ignores
it), fsync, then rename: a reader sees the old file or the new one, never half.
A file the daemon did not write is never overwritten or removed: our JSON
files say `"generator": "ocr-inbox"`, and a Markdown file is ours when its
hash is the one our JSON (or the journal) recorded. Symlinks are never written
through: rename replaces a link itself, so a link at an output path counts as
not ours.

On success the pair is written and an older error sidecar of ours removed; on
failure the sidecar is written and an older pair of ours removed, so each
input ends with exactly one pair or one sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

GENERATOR = "ocr-inbox"
MARKDOWN_SUFFIX = ".ocr.md"
JSON_SUFFIX = ".ocr.json"
ERROR_SUFFIX = ".ocr.error.json"
TEMP_SUFFIX = ".ocr-inbox.tmp"
# Our JSON files are small; refuse to parse something huge that only shares the name.
MAX_OWNED_JSON_BYTES = 64 * 1024 * 1024

OutputFailure = Literal["permission", "no_space", "not_ours", "io"]


class OutputError(Exception):
    """An output could not be written; `reason` says why (it labels a metric)."""

    def __init__(self, reason: OutputFailure, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.reason: OutputFailure = reason
        self.path = path


@dataclass(frozen=True, slots=True)
class OutputPaths:
    markdown: Path
    json: Path
    error: Path

    @classmethod
    def beside(cls, source: Path) -> OutputPaths:
        name = source.name
        return cls(
            markdown=source.with_name(name + MARKDOWN_SUFFIX),
            json=source.with_name(name + JSON_SUFFIX),
            error=source.with_name(name + ERROR_SUFFIX),
        )


@dataclass(frozen=True, slots=True)
class Recorded:
    """What our outputs on disk say was done for an input."""

    outcome: Literal["done", "failed"]
    sha256: str


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_json(payload: dict[str, Any], indent: int | None) -> bytes:
    return (json.dumps(payload, ensure_ascii=False, indent=indent) + "\n").encode("utf-8")


# --- ownership ---------------------------------------------------------------


def _regular_file(path: Path) -> os.stat_result | None:
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
        info = _regular_file(path)
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


def _file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _markdown_is_ours(path: Path, known_hashes: Iterable[str]) -> bool:
    if _regular_file(path) is None:
        return True
    digest = _file_sha256(path)
    return digest is not None and digest in set(known_hashes)


def recorded(source: Path) -> Recorded | None:
    """The outcome our outputs record for `source`, if a complete set is on disk."""
    paths = OutputPaths.beside(source)
    payload = read_owned_json(paths.json)
    if payload is not None:
        md_hash = payload.get("markdown_sha256")
        sha = payload.get("input", {}).get("sha256")
        if isinstance(sha, str) and md_hash is not None and _file_sha256(paths.markdown) == md_hash:
            return Recorded("done", sha)
    error = read_owned_json(paths.error)
    if error is not None:
        sha = error.get("input", {}).get("sha256")
        if isinstance(sha, str):
            return Recorded("failed", sha)
    return None


# --- writing -----------------------------------------------------------------


def _temp_path(target: Path) -> Path:
    token = f".{secrets.token_hex(4)}{TEMP_SUFFIX}"
    # The target's name makes a leftover temp file recognisable, but only as
    # much of it as fits: an output name that fits must not fail for its temp.
    room = max(0, _name_max(target.parent) - 1 - len(token))
    name = os.fsencode(target.name)[:room].decode("utf-8", "ignore")  # no half characters
    return target.with_name(f".{name}{token}")


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the folder's filesystem allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255  # NAME_MAX of Linux filesystems


def name_problem(source: Path) -> tuple[str, str] | None:
    """(code, message) when outputs cannot be named after `source`; None when they can.

    Our outputs add up to len(ERROR_SUFFIX) bytes to the input's name, so a name
    within that many bytes of the filesystem's limit cannot have them beside it.
    A name that is not valid UTF-8 cannot be recorded in the journal or the JSON.
    """
    name = source.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "name_not_utf8",
            f"the file name '{os.fsencode(name).decode('utf-8', 'backslashreplace')}' is not valid"
            " UTF-8; rename the file",
        )
    limit = _name_max(source.parent)
    longest = len(os.fsencode(name + ERROR_SUFFIX))
    if longest > limit:
        return (
            "name_too_long",
            f"the file name is {longest - len(ERROR_SUFFIX)} bytes; outputs add"
            f" {len(ERROR_SUFFIX)} and this filesystem allows {limit}: rename the file to at"
            f" most {limit - len(ERROR_SUFFIX)} bytes",
        )
    return None


def _classify_os_error(error: OSError) -> OutputFailure:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "no_space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission"
    return "io"


def _write_temp(target: Path, data: bytes) -> Path:
    """Write data to a new hidden temp file beside target and fsync it."""
    temp = _temp_path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o644)
    except OSError as error:
        raise OutputError(
            _classify_os_error(error), target, error.strerror or str(error)
        ) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(
            _classify_os_error(error), target, error.strerror or str(error)
        ) from error
    except BaseException:
        # SIGXFSZ turned into an exception, KeyboardInterrupt...: no temp file stays.
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return temp


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _commit(temps: list[tuple[Path, Path]]) -> None:
    """Rename temps onto their targets in order; on error remove what is left."""
    try:
        for temp, target in temps:
            os.replace(temp, target)
    except OSError as error:
        for temp, _ in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise OutputError(
            _classify_os_error(error), temps[0][1], error.strerror or str(error)
        ) from error


def _remove_if_ours_json(path: Path) -> None:
    if read_owned_json(path) is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_success(
    source: Path,
    markdown: str,
    payload: dict[str, Any],
    *,
    known_markdown_hashes: Iterable[str] = (),
    before_commit: Callable[[str], None] | None = None,
    indent: int | None = 2,
) -> OutputPaths:
    """Write the Markdown and JSON outputs for `source`; remove our stale error sidecar.

    `before_commit(markdown_sha256)` runs after both temp files are durable and
    before the renames (the journal notes the hash there).
    """
    paths = OutputPaths.beside(source)
    md_hash = sha256_text(markdown)
    existing = read_owned_json(paths.json)
    ours = set(known_markdown_hashes)
    if existing is not None and isinstance(existing.get("markdown_sha256"), str):
        ours.add(existing["markdown_sha256"])
    if _regular_file(paths.json) is not None and existing is None:
        raise OutputError("not_ours", paths.json, "a file not written by ocr-inbox is in the way")
    if not _markdown_is_ours(paths.markdown, ours):
        raise OutputError(
            "not_ours", paths.markdown, "a file not written by ocr-inbox is in the way"
        )

    body = dict(payload, generator=GENERATOR, markdown_sha256=md_hash)
    md_temp = _write_temp(paths.markdown, markdown.encode("utf-8"))
    try:
        json_temp = _write_temp(paths.json, encode_json(body, indent))
    except OutputError:
        with contextlib.suppress(OSError):
            md_temp.unlink()
        raise
    if before_commit is not None:
        try:
            before_commit(md_hash)
        except BaseException:
            for temp in (md_temp, json_temp):
                with contextlib.suppress(OSError):
                    temp.unlink()
            raise
    # Markdown first: the JSON that vouches for it lands last.
    _commit([(md_temp, paths.markdown), (json_temp, paths.json)])
    _fsync_folder(source.parent)
    _remove_if_ours_json(paths.error)
    return paths


def write_failure(
    source: Path,
    payload: dict[str, Any],
    *,
    known_markdown_hashes: Iterable[str] = (),
    before_commit: Callable[[], None] | None = None,
    indent: int | None = 2,
) -> OutputPaths:
    """Write the error sidecar for `source`; remove an older pair of ours.

    `before_commit()` runs after the temp file is durable and before its rename.
    """
    paths = OutputPaths.beside(source)
    if _regular_file(paths.error) is not None and read_owned_json(paths.error) is None:
        raise OutputError("not_ours", paths.error, "a file not written by ocr-inbox is in the way")
    body = dict(payload, generator=GENERATOR)
    temp = _write_temp(paths.error, encode_json(body, indent))
    if before_commit is not None:
        try:
            before_commit()
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
    _commit([(temp, paths.error)])
    _fsync_folder(source.parent)
    existing = read_owned_json(paths.json)
    ours = set(known_markdown_hashes)
    if existing is not None:
        md_hash = existing.get("markdown_sha256")
        if isinstance(md_hash, str):
            ours.add(md_hash)
        try:
            if _markdown_is_ours(paths.markdown, ours):  # also true when it is absent
                paths.markdown.unlink()
        except (OutputError, FileNotFoundError):
            pass
        with contextlib.suppress(FileNotFoundError):
            paths.json.unlink()  # `existing` says it is ours
    return paths


def remove_stale_temp_files(folders: Iterable[Path], *, recursive: bool) -> int:
    """Delete temp files a killed daemon left behind; returns how many."""
    removed = 0
    for folder in folders:
        stack = [folder]
        while stack:
            current = stack.pop()
            try:
                # One entry at a time: an inbox of 100,000 finished files holds
                # 300,000 entries, and a list of them cost ~75 MB at every start.
                with os.scandir(current) as entries:
                    for entry in entries:
                        if entry.is_file(follow_symlinks=False) and entry.name.endswith(
                            TEMP_SUFFIX
                        ):
                            with contextlib.suppress(OSError):
                                os.unlink(entry.path)
                                removed += 1
                        elif recursive and entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
            except OSError:
                continue
    return removed
