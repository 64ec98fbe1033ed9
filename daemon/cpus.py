"""How many CPUs this process may use (its affinity mask, not the machine's count),
and how busy they are.

Under systemd's CPUAffinity=, a container's cpuset or `taskset`, os.cpu_count()
overstates what the process gets; thread pools sized from it oversubscribe.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs in this process's affinity mask (os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> str:
    """The 1-minute load average, for benchmark headers ("n/a" where the OS has none).

    Other work on the machine skews every figure, so reports print it.
    """
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):  # no /proc/loadavg in some sandboxes; no call on Windows
        return "n/a"
