"""Checking systemd unit files offline with systemd-analyze.

`systemd-analyze verify` refuses a unit whose ExecStart= is missing and
resolves every unit it depends on. Pointed at a staged root (--root=DIR) it
looks for both inside DIR, so the tests give that root the host's own unit
files and stand-ins for the executables, and verify the unit exactly as it is
shipped, at the paths it names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))

# The order systemd-analyze security uses, best first.
EXPOSURE_LEVELS = ("PERFECT", "SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS")

_OVERALL = re.compile(r"Overall exposure level for \S+:\s+(\d+(?:\.\d+)?)\s+([A-Z]+)")
_EXEC_LINE = re.compile(r"^(?:ExecStart|ExecReload)=[-@:+!]*(/\S+)", re.MULTILINE)


class VerifyRootError(Exception):
    """The host lacks what a verify root needs (its systemd unit files)."""


def executables(unit_text: str) -> list[str]:
    """The absolute paths of the programs a unit's ExecStart=/ExecReload= lines run."""
    return _EXEC_LINE.findall(unit_text)


def prepare_verify_root(root: Path, unit_text: str) -> None:
    """Give `root` the host's unit files and an executable stand-in for each program `unit_text` runs."""
    host_units = next((path for path in HOST_UNIT_DIRS if path.is_dir()), None)
    if host_units is None:
        raise VerifyRootError(f"no systemd unit directory on this host ({HOST_UNIT_DIRS})")
    staged_units = root / "usr/lib/systemd/system"
    if not staged_units.exists():
        shutil.copytree(host_units, staged_units, symlinks=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / target).mkdir(parents=True, exist_ok=True)
        if not (root / link).exists() and not (root / link).is_symlink():
            (root / link).symlink_to(target)
    for program in executables(unit_text):
        stand_in = root / program.lstrip("/")
        if not stand_in.exists():
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\nexit 0\n")
            stand_in.chmod(0o755)


@dataclass(frozen=True)
class Exposure:
    score: float
    level: str

    def at_most(self, level: str) -> bool:
        """Whether this rating is `level` or better."""
        return EXPOSURE_LEVELS.index(self.level) <= EXPOSURE_LEVELS.index(level)


def parse_exposure(report: str) -> Exposure:
    """The overall figure and level from `systemd-analyze security` output."""
    found = _OVERALL.search(report)
    if found is None:
        raise ValueError(f"no overall exposure line in:\n{report}")
    level = found.group(2)
    if level not in EXPOSURE_LEVELS:
        raise ValueError(f"unknown exposure level {level!r}")
    return Exposure(float(found.group(1)), level)


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a systemd tool without a pager or colours, capturing everything it prints."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "SYSTEMD_LOG_LEVEL": "info"},
        check=False,
    )
