"""Make permission cases real even when the tests run as root (as CI does).

Root passes every permission check through CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH. Dropping those two capabilities (util-linux `setpriv`)
keeps uid 0, so the interpreter under /root stays reachable, but makes file
modes apply again: a 0o555 folder cannot be written, a 0o000 file cannot be
read. Without root nothing needs dropping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAC_CAPS = "-dac_override,-dac_read_search"


def obeying_permissions(argv: list[str]) -> list[str]:
    """argv, prefixed so that it runs subject to file permissions."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root needs util-linux's setpriv to test permissions")
    return [setpriv, f"--inh-caps={DAC_CAPS}", f"--bounding-set={DAC_CAPS}", *argv]


def run_python_obeying_permissions(
    code: str, *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that file permissions apply to."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        obeying_permissions([sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
