"""Write an input's set of outputs (NAME.ocr.md, .json, .txt, .hocr, .pdf) or its error sidecar.

Every write is a temp file in the same folder (hidden, so the watcher ignores
it), fsync, then rename: a reader sees the old file or the new one, never half.
Which files are ours to replace is daemon.outputs.ownership's business.

A set is many files, and no filesystem renames many files at once, so a set is
committed in an order that a crash can interrupt anywhere and leave nothing
that looks finished but is not: every temp file is durable first, then the
journal notes the new files' hashes (so they are ours even if the crash comes
before the JSON that would list them), then the outputs are renamed into
place, and the `.ocr.json`, which lists each output with its hash, lands
last. Until it does, the set on disk does not match any JSON, so the file is
not done and is processed again (`ownership.recorded`); a set of old and new
files is therefore never taken for a finished one.

On success the set is written, then our stale error sidecar and any output of
our older set that the new set does not include are removed; on failure the
sidecar is written and our older set removed, so each input ends with exactly
one complete set or one sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.outputs.mirror import ensure_tree
from daemon.outputs.ownership import (
    Recorded,
    file_sha256,
    is_ours,
    listed_outputs,
    read_owned_json,
    recorded,
    regular_file,
)
from daemon.outputs.paths import (
    ERROR_SUFFIX,
    FORMAT_SUFFIXES,
    GENERATOR,
    JSON_SUFFIX,
    MARKDOWN_SUFFIX,
    OUTPUT_SUFFIXES,
    TEMP_SUFFIX,
    OutputError,
    OutputFailure,
    OutputPaths,
    name_max,
    name_problem,
)

# The names other rooms know this module by.
__all__ = [
    "ERROR_SUFFIX",
    "FORMAT_SUFFIXES",
    "GENERATOR",
    "JSON_SUFFIX",
    "MARKDOWN_SUFFIX",
    "OUTPUT_SUFFIXES",
    "TEMP_SUFFIX",
    "OutputError",
    "OutputFailure",
    "OutputPaths",
    "Recorded",
    "encode_json",
    "fsync_folder",
    "name_problem",
    "read_owned_json",
    "recorded",
    "remove_stale_temp_files",
    "sha256_bytes",
    "sha256_text",
    "write_failure",
    "write_success",
    "writer_tag",
]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def encode_json(payload: dict[str, Any], indent: int | None) -> bytes:
    return (json.dumps(payload, ensure_ascii=False, indent=indent) + "\n").encode("utf-8")


# --- writing -----------------------------------------------------------------


def writer_tag(node: str) -> str:
    """The mark of a daemon (node) in its temp files' names: 8 hex digits, whatever the node's name."""
    return hashlib.sha256(node.encode()).hexdigest()[:8]


def _temp_path(target: Path, writer: str = "") -> Path:
    # `writer` (writer_tag) says whose temp file it is: daemons sharing one
    # folder remove only their own leftovers, never another's write in progress.
    mark = f".w{writer}" if writer else ""
    token = f"{mark}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    # The target's name makes a leftover temp file recognisable, but only as
    # much of it as fits: an output name that fits must not fail for its temp.
    room = max(0, name_max(target.parent) - 1 - len(token))
    name = os.fsencode(target.name)[:room].decode("utf-8", "ignore")  # no half characters
    return target.with_name(f".{name}{token}")


def _classify_os_error(error: OSError) -> OutputFailure:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "no_space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission"
    return "io"


def _write_temp(target: Path, data: bytes, writer: str = "") -> Path:
    """Write data to a new hidden temp file beside target and fsync it."""
    temp = _temp_path(target, writer)
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


def fsync_folder(folder: Path) -> None:
    """Make a rename or removal in `folder` durable (best effort: some filesystems refuse)."""
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


def _remove_if_ours(path: Path, digest: str) -> None:
    """Remove the file at `path` if it still has the hash our record gave it."""
    try:
        if regular_file(path) is not None and file_sha256(path) == digest:
            path.unlink()
    except (OutputError, FileNotFoundError):
        pass


def _discard(temps: Iterable[Path]) -> None:
    for temp in temps:
        with contextlib.suppress(OSError):
            temp.unlink()


def write_success(
    source: Path,
    files: Mapping[str, bytes],
    payload: dict[str, Any],
    *,
    known_hashes: Iterable[str] = (),
    before_commit: Callable[[list[str]], None] | None = None,
    indent: int | None = 2,
    paths: OutputPaths | None = None,
    writer: str = "",
) -> OutputPaths:
    """Write the set for `source`: `files` (format -> bytes) and the JSON that lists them.

    `before_commit(hashes)` runs once every temp file is durable and before
    the first rename (the journal notes the hashes there). Our stale error
    sidecar, and outputs of our older set that this set leaves out, are removed.
    """
    if "json" in files:
        raise ValueError("the JSON is built from `payload`, not passed in `files`")
    paths = paths or OutputPaths.beside(source)
    ensure_tree(paths)
    existing = read_owned_json(paths.json)
    old_listed = listed_outputs(existing)
    ours = set(known_hashes) | set(old_listed.values())
    if regular_file(paths.json) is not None and existing is None:
        raise OutputError("not_ours", paths.json, "a file not written by ocr-inbox is in the way")
    for format in files:
        target = paths.of(format)
        if not is_ours(target, ours):
            raise OutputError("not_ours", target, "a file not written by ocr-inbox is in the way")

    hashes = {format: sha256_bytes(data) for format, data in files.items()}
    body = dict(
        payload,
        generator=GENERATOR,
        outputs={
            format: {"file": paths.of(format).name, "sha256": hashes[format], "bytes": len(data)}
            for format, data in files.items()
        },
    )
    if "md" in hashes:
        body["markdown_sha256"] = hashes["md"]  # what readers of schema 1 look for
    temps: list[tuple[Path, Path]] = []
    try:
        for format, data in files.items():
            target = paths.of(format)
            temps.append((_write_temp(target, data, writer), target))
        temps.append((_write_temp(paths.json, encode_json(body, indent), writer), paths.json))
        if before_commit is not None:
            before_commit(list(hashes.values()))
    except BaseException:
        _discard(temp for temp, _ in temps)
        raise
    # The JSON that vouches for the others lands last.
    _commit(temps)
    fsync_folder(paths.directory)
    _remove_if_ours_json(paths.error)
    for format, digest in old_listed.items():
        if format not in files:
            _remove_if_ours(paths.of(format), digest)
    return paths


def write_failure(
    source: Path,
    payload: dict[str, Any],
    *,
    known_hashes: Iterable[str] = (),
    before_commit: Callable[[], None] | None = None,
    indent: int | None = 2,
    paths: OutputPaths | None = None,
    writer: str = "",
) -> OutputPaths:
    """Write the error sidecar for `source`; remove an older set of ours.

    `before_commit()` runs after the temp file is durable and before its rename.
    `known_hashes` (the journal's) make outputs of a set whose JSON never
    landed ours to remove.
    """
    paths = paths or OutputPaths.beside(source)
    ensure_tree(paths)
    if regular_file(paths.error) is not None and read_owned_json(paths.error) is None:
        raise OutputError("not_ours", paths.error, "a file not written by ocr-inbox is in the way")
    body = dict(payload, generator=GENERATOR)
    temp = _write_temp(paths.error, encode_json(body, indent), writer)
    if before_commit is not None:
        try:
            before_commit()
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
    _commit([(temp, paths.error)])
    fsync_folder(paths.directory)
    existing = read_owned_json(paths.json)
    listed = listed_outputs(existing)
    known = set(known_hashes)
    for format in FORMAT_SUFFIXES:
        target = paths.of(format)
        if format in listed:
            _remove_if_ours(target, listed[format])
        elif format != "json" and known:
            with contextlib.suppress(OutputError, OSError):
                if regular_file(target) is not None and file_sha256(target) in known:
                    target.unlink()
    if existing is not None:
        with contextlib.suppress(FileNotFoundError):
            paths.json.unlink()  # `existing` says it is ours
    return paths


def remove_stale_temp_files(
    folders: Iterable[Path],
    *,
    recursive: bool,
    writers: Mapping[str, float | None] | None = None,
) -> int:
    """Delete temp files a killed daemon left behind; returns how many.

    `writers` (writer_tag of a node -> a moment, seconds since the epoch, or
    None): only temp files of those writers (this node, and nodes known to be
    gone), for a folder shared with other daemons whose writes may be in
    progress; of a writer with a moment, only files last modified before it
    (newer ones are the writes of that node started again). None: every temp
    file of ours (one daemon owns the folder).
    """
    marks = (
        None if writers is None else {f".w{writer}.": before for writer, before in writers.items()}
    )
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
                            if _stale(entry, marks):
                                with contextlib.suppress(OSError):
                                    os.unlink(entry.path)
                                    removed += 1
                        elif recursive and entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
            except OSError:
                continue
    return removed


def _stale(entry: os.DirEntry[str], marks: Mapping[str, float | None] | None) -> bool:
    """Whether a temp file is a leftover of one of `marks`' writers (None: of any writer)."""
    if marks is None:
        return True
    for mark, before in marks.items():
        if mark in entry.name:
            if before is None:
                return True
            with contextlib.suppress(OSError):
                return entry.stat(follow_symlinks=False).st_mtime < before
            return False
    return False
