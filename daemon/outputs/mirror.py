"""The mirrored tree under an inbox's output folder: made as needed, never through a symlink.

An inbox with `output_dir` gets its outputs at output_dir/<the input's folder
below the inbox>/NAME.ocr.<format>. The output folder itself is the
operator's choice (it may be a link to another disk); below it every folder
is made by the daemon, and one that turns out to be a symlink (or a file) is
refused with `not_ours`: a link planted in the tree must not lead the
daemon's writes out of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from daemon.outputs.paths import OutputError, OutputFailure, OutputPaths


def ensure_tree(paths: OutputPaths) -> None:
    """Make the folders from `paths.root` down to `paths.folder` (no-op beside the input)."""
    if paths.root is None or paths.folder is None:
        return
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        folder = paths.root
        for part in paths.folder.relative_to(paths.root).parts:
            folder = folder / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder)
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise OutputError(
                    "not_ours",
                    folder,
                    "the output tree has a symlink or a file here; not writing through it",
                )
    except OSError as error:
        reason: OutputFailure = (
            "no_space"
            if error.errno in (errno.ENOSPC, errno.EDQUOT)
            else "permission"
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
            else "io"
        )
        raise OutputError(reason, paths.folder, error.strerror or str(error)) from error
