"""Real full disks for tests: a small tmpfs mounted on a folder, filled to the last block.

Mounting needs root (CAP_SYS_ADMIN), which CI has. Without it the test is
skipped on a developer's machine and fails under REQUIRE_SYSTEM_TOOLS=1, like
a missing system tool: a disk-full test that silently skips protects nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.tools import require_tool, unavailable

BLOCK = 4096  # tmpfs allocates whole pages


@contextlib.contextmanager
def small_tmpfs(folder: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` on `folder` (created if missing) for the duration."""
    mount = require_tool("mount")
    umount = require_tool("umount")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([umount, "-l", str(folder)], check=False)


def fill(folder: Path, *, leave_blocks: int = 0, name: str = ".filler") -> Path:
    """Fill the filesystem of `folder` with a hidden file until writes fail, then free
    `leave_blocks` blocks again; returns the filler (delete it to give the space back)."""
    filler = folder / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        chunk = b"\0" * BLOCK
        while True:
            try:
                os.write(fd, chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - leave_blocks * BLOCK))
    finally:
        os.close(fd)
    return filler


def free_blocks(folder: Path) -> int:
    info = os.statvfs(folder)
    return info.f_bavail * info.f_frsize // BLOCK
