"""How many CPUs this process may use (its affinity mask, not the machine's count).

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
