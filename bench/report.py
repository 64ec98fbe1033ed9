"""What every benchmark part prints: the machine, Markdown tables, percentiles."""

from __future__ import annotations

import datetime as dt
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon.cpus import load_average, usable_cpus


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (or what the platform module says elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def machine() -> str:
    """One line naming the hardware, for the head of every table."""
    memory = memory_gib()
    ram = f"{memory:.1f} GiB RAM" if memory is not None else "RAM unknown"
    return f"{usable_cpus()} cores ({cpu_model()}), {ram}, Python {platform.python_version()}"


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def heading(title: str, notes: Sequence[str] = ()) -> str:
    """A part's heading: its title, the machine, the date, the load when it started."""
    lines = [
        f"### {title}",
        "",
        f"Machine: {machine()}; {now_utc()}; load average at start {load_average()}.",
    ]
    lines.extend(notes)
    return "\n".join(lines) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; `align` holds one of l/r per column (numbers right by default)."""
    widths = len(header)
    aligns = align or "l" + "r" * (widths - 1)
    rule = ["---:" if a == "r" else "---" for a in aligns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rule) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` (0..1) percentile by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def seconds(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def ratio(numerator: float, denominator: float) -> str:
    if denominator <= 0 or math.isnan(numerator) or math.isnan(denominator):
        return "n/a"
    return f"{numerator / denominator:.2f}"


def mebibytes(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def quiet_logs() -> None:
    """Daemon code run inside a benchmark logs only warnings, to stderr, off the tables."""
    import logging

    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
