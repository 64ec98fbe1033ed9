"""Moving an input out of its inbox once it is done: into an archive (or failed) folder's
mirrored tree, never overwriting, across filesystems too.

The move is made so that a kill at any moment loses nothing and leaves no
second copy once it is finished again: the destination name is chosen first
(a clash gets a suffix: scan.png, scan-2.png, ...) and the caller records it
in the journal; then the input is linked there (same filesystem: no copy),
or copied to a hidden temp file there, fsynced and linked into place (a link
never replaces an existing file, so nothing is overwritten even in a race);
the folder is fsynced; only then is the input removed from the inbox. Run
again with the same destination after a crash, `move` finishes the job: a
destination that is there already is the copy made before the crash.

Outputs beside the input (no output_dir) move with it and keep its name:
scan-2.png gets scan-2.png.ocr.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from daemon import fault_points
from daemon.outputs.mirror import ensure_tree
from daemon.outputs.paths import TEMP_SUFFIX, OutputPaths
from daemon.outputs.writing import fsync_folder


def destination(source: Path, inbox: Path, root: Path) -> Path:
    """The first free name for `source` in `root`'s mirror of its folder (folders made as needed)."""
    paths = OutputPaths.mirrored(source, inbox, root)
    ensure_tree(paths)
    folder = paths.directory
    stem, suffix = _split(source.name)
    candidate, number = folder / source.name, 1
    while os.path.lexists(candidate):
        number += 1
        candidate = folder / f"{stem}-{number}{suffix}"
    return candidate


def _split(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if stem else (name, "")


def move(source: Path, target: Path, companions: Sequence[tuple[Path, Path]] = ()) -> None:
    """Move `source` to `target` (and each companion, source to target) without overwriting.

    Raises OSError when the input cannot be placed (the caller keeps it where
    it is and says why); a target that exists already counts as placed.
    """
    for companion, companion_target in companions:
        if os.path.lexists(companion):
            _place(companion, companion_target)
    placed = _place(source, target)
    if placed:
        fsync_folder(target.parent)
        fault_points.reached(fault_points.ARCHIVE_COPIED)
    for companion, _ in companions:
        with contextlib.suppress(FileNotFoundError):
            companion.unlink()
    with contextlib.suppress(FileNotFoundError):
        source.unlink()
    fsync_folder(source.parent)


def _place(source: Path, target: Path) -> bool:
    """Link (or copy) `source` to `target`; False when there was nothing left to place."""
    if os.path.lexists(target):
        # Placed before a crash (whole: it only ever appears by link), or a
        # file of someone else's that took the name: that one is not ours.
        try:
            mine, theirs = os.lstat(source), os.lstat(target)
        except FileNotFoundError:
            return False
        if (mine.st_size, mine.st_mtime_ns) != (theirs.st_size, theirs.st_mtime_ns):
            raise FileExistsError(errno.EEXIST, "the archive name is taken", str(target))
        return True
    try:
        os.link(source, target, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
    temp = target.with_name(f".{target.name[:200]}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with source.open("rb") as reader, temp.open("xb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, temp)
        os.link(temp, target)  # never replaces: EEXIST if someone took the name meanwhile
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return True
