"""A chaos drill against the real daemon: random injected faults, random SIGKILLs, one daemon kill.

Used by tests/e2e/test_chaos.py (200 files, in the suite) and bench/chaos.py
(2,000 files, with a table of recovery times). The chain is two fault-injection
models: "flaky" fails by probability, "steady" never does, and K is generous so
the chain is never exhausted: every file must end done or quarantined.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from daemon.journal.sqlite import SqliteJournal
from harness.driver import (
    Daemon,
    base_settings,
    outputs_of,
    read_json,
    record_time,
    start_daemon,
)
from harness.drops import drop_png

# Probability per document on "flaky" (rules are tried in order; the first that fires wins).
FAULT_MIX: dict[str, float] = {
    "crash": 0.02,
    "segfault": 0.02,
    "cuda_fatal": 0.03,
    "hang": 0.01,
    "oom_transient": 0.04,
    "oom": 0.02,
    "empty": 0.02,
    "degenerate": 0.02,
    "error": 0.02,
    "bad_input": 0.005,
}
# Log lines after which the daemon has visibly recovered.
RECOVERED = ("file.done", "model.loaded")


@dataclass
class ChaosPlan:
    files: int = 200
    seed: int = 20240611
    worker_kills: int = 8  # SIGKILLs of a worker process from outside
    kill_interval: tuple[float, float] = (0.5, 3.0)  # seconds between them
    daemon_kill_at: float = 0.4  # SIGKILL the daemon once this share of files is finished
    fault_mix: dict[str, float] = field(default_factory=lambda: dict(FAULT_MIX))
    page_deadline_seconds: float = 2.0
    timeout: float = 600.0


@dataclass
class ChaosResult:
    root: Path
    inputs: list[Path]
    logs: list[Path]
    events: list[dict[str, Any]]  # both daemons' JSON lines, in order
    kills: list[tuple[float, int]]  # (unix time, pid) of each worker SIGKILL
    daemon_killed_at: float
    written_before_kill: dict[Path, bytes]
    exit_code: int
    seconds: float

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            record
            for record in self.events
            if record.get("event") == event
            and all(record.get(key) == value for key, value in fields.items())
        ]


def chaos_settings(root: Path, plan: ChaosPlan) -> dict[str, Any]:
    settings = base_settings(
        root / "inbox",
        root / "state",
        worker={"chain": ["flaky", "steady"]},
        limits={"page_deadline_seconds": plan.page_deadline_seconds},
        recovery={
            "max_fatal_failures": 100_000,  # never demote: this drill is about files
            "attempts_per_model": 2,
            "stop_grace_seconds": 1.0,
            "backoff_cap_seconds": 2.0,
        },
        log={"level": "info", "format": "json"},
    )
    rules = [{"match": "*", "fault": kind, "probability": p} for kind, p in plan.fault_mix.items()]
    settings["models"] = {
        "flaky": {"engine": "faulty", "rules": rules, "seed": plan.seed},
        "steady": {"engine": "faulty"},
    }
    return settings


def workers_of(daemon: Daemon) -> list[psutil.Process]:
    """The daemon's worker processes: its children started by multiprocessing spawn."""
    try:
        children = psutil.Process(daemon.process.pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
    return found


class WorkerKiller(threading.Thread):
    """SIGKILLs a random worker of the current daemon now and then, as the OOM killer would."""

    def __init__(self, plan: ChaosPlan, rng: random.Random) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.plan = plan
        self.rng = rng
        self.daemon_ref: Daemon | None = None
        self.kills: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def target(self, daemon: Daemon | None) -> None:
        with self.lock:
            self.daemon_ref = daemon

    def run(self) -> None:
        while len(self.kills) < self.plan.worker_kills:
            if self.done.wait(self.rng.uniform(*self.plan.kill_interval)):
                return
            with self.lock:
                daemon = self.daemon_ref
                victims = workers_of(daemon) if daemon is not None else []
                if not victims:
                    continue
                victim = self.rng.choice(victims)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim.pid, signal.SIGKILL)
                    self.kills.append((time.time(), victim.pid))


def _outcomes(inputs: list[Path]) -> list[set[str]]:
    """Which outputs each input has, from one listing per folder (cheap to poll)."""
    names: dict[Path, set[str]] = {}
    for folder in {path.parent for path in inputs}:
        names[folder] = set(os.listdir(folder))
    suffixes = (("md", ".ocr.md"), ("json", ".ocr.json"), ("error", ".ocr.error.json"))
    return [
        {key for key, suffix in suffixes if path.name + suffix in names[path.parent]}
        for path in inputs
    ]


def finished(inputs: list[Path]) -> int:
    return sum(1 for kinds in _outcomes(inputs) if kinds)


def settled(inputs: list[Path]) -> bool:
    """Every input has a complete outcome on disk: a pair, or an error sidecar."""
    return all(kinds in ({"md", "json"}, {"error"}) for kinds in _outcomes(inputs))


def wait_for(condition: Any, daemon: Daemon, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if daemon.process.poll() is not None:
            raise AssertionError(
                f"daemon exited ({daemon.process.returncode}) waiting for {what}:\n"
                + daemon.log_text()[-4000:]
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + daemon.log_text()[-4000:])
        time.sleep(0.5)


def run_chaos(root: Path, plan: ChaosPlan) -> ChaosResult:
    """Drop plan.files files, break things while they are processed, and return what happened."""
    rng = random.Random(plan.seed)
    settings = chaos_settings(root, plan)
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    killer = WorkerKiller(plan, rng)
    started = time.monotonic()
    first = start_daemon(root, settings, log_name="first.log")
    second: Daemon | None = None
    try:
        first.wait_ready(timeout=120)
        killer.target(first)
        killer.start()
        inputs = [
            drop_png(inbox / f"doc-{index:05d}.png", seed=index) for index in range(plan.files)
        ]
        wait_for(
            lambda: finished(inputs) >= plan.files * plan.daemon_kill_at,
            first,
            plan.timeout,
            f"{plan.daemon_kill_at:.0%} of the files",
        )
        killer.target(None)
        daemon_killed_at = time.time()
        first.kill()
        written = {}
        for path in inputs:
            for output in outputs_of(path).values():
                with contextlib.suppress(FileNotFoundError):
                    written[output] = output.read_bytes()
        second = start_daemon(root, settings, log_name="second.log")
        killer.target(second)
        wait_for(lambda: settled(inputs), second, plan.timeout, "every file's outcome")
        killer.done.set()
        killer.join(timeout=30)
        killer.target(None)
        time.sleep(1.0)  # anything done twice would show up now
        exit_code = second.stop(timeout=60)
    finally:
        killer.done.set()
        first.kill()
        if second is not None:
            second.kill()
    seconds = time.monotonic() - started
    assert second is not None
    events = first.events() + second.events()
    return ChaosResult(
        root=root,
        inputs=inputs,
        logs=[first.log_path, second.log_path],
        events=events,
        kills=list(killer.kills),
        daemon_killed_at=daemon_killed_at,
        written_before_kill=written,
        exit_code=exit_code,
        seconds=seconds,
    )


# --- checks ----------------------------------------------------------------------------


def problems(result: ChaosResult) -> list[str]:
    """Every broken promise: a file without exactly one outcome, a leftover, a file done twice."""
    found: list[str] = []
    inbox = result.root / "inbox"
    for path in result.inputs:
        kinds = set(outputs_of(path))
        if kinds not in ({"md", "json"}, {"error"}):
            found.append(f"{path.name}: outputs {sorted(kinds)}")
            continue
        if kinds == {"md", "json"}:
            document = read_json(outputs_of(path)["json"])
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if document["input"]["sha256"] != digest:
                found.append(f"{path.name}: JSON describes other content")
    expected = {path.name for path in result.inputs}
    for path in result.inputs:
        expected.update(output.name for output in outputs_of(path).values())
    for leftover in sorted(set(os.listdir(inbox)) - expected):
        found.append(f"left in the inbox: {leftover}")
    done = Counter(record["file"] for record in result.find("file.done"))
    failed = Counter(record["file"] for record in result.find("file.failed"))
    for name, count in (done + failed).items():
        if count > 1:
            found.append(
                f"{name}: finished {count} times (done {done[name]}, failed {failed[name]})"
            )
    for output, before in result.written_before_kill.items():
        if not output.exists() or output.read_bytes() != before:
            found.append(f"{output.name}: rewritten after the daemon was killed")
    if result.find("chain.exhausted"):
        found.append("the chain was exhausted")
    if result.exit_code != 0:
        found.append(f"the daemon stopped with exit code {result.exit_code}")
    journal = SqliteJournal.open(result.root / "state")
    try:
        counts = journal.counts()
    finally:
        journal.close()
    if counts.get("pending"):
        found.append(f"{counts['pending']} journal rows still pending")
    return found


# --- figures -----------------------------------------------------------------------------


@dataclass
class Figures:
    faults: Counter[str]  # injected (by kind), plus "sigkill" and "daemon_kill"
    worker_restarts: int
    recovery_seconds: dict[str, list[float]]  # by fault kind
    done: int
    failed: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


def figures(result: ChaosResult) -> Figures:
    """Faults by kind and how long the daemon took to show progress after each."""
    events = sorted(result.events, key=record_time)
    progress = [record_time(record) for record in events if record.get("event") in RECOVERED]

    def recovery(after: float) -> float | None:
        following = [moment for moment in progress if moment > after]
        return following[0] - after if following else None

    faults: Counter[str] = Counter()
    times: dict[str, list[float]] = {}
    moments: list[tuple[str, float]] = [
        (str(record["fault"]), record_time(record)) for record in result.find("fault.injected")
    ]
    moments += [("sigkill", moment) for moment, _pid in result.kills]
    moments.append(("daemon_kill", result.daemon_killed_at))
    for kind, moment in moments:
        faults[kind] += 1
        seconds = recovery(moment)
        if seconds is not None:
            times.setdefault(kind, []).append(seconds)
    restarts = len(result.find("worker.restart_scheduled"))
    outcomes = Counter(frozenset(outputs_of(path)) for path in result.inputs)
    done = outcomes[frozenset({"md", "json"})]
    failed = outcomes[frozenset({"error"})]
    return Figures(faults, restarts, times, done, failed, result.seconds)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def table(figures: Figures) -> str:
    """The drill's figures as a plain-text table."""
    lines = [
        f"{'fault':<16}{'count':>7}{'recover p50':>14}{'p95':>9}{'max':>9}",
        "-" * 55,
    ]
    every: list[float] = []
    for kind in sorted(figures.faults):
        times = figures.recovery_seconds.get(kind, [])
        every += times
        if times:
            cells = f"{percentile(times, 0.5):>13.2f}s{percentile(times, 0.95):>8.2f}s{max(times):>8.2f}s"
        else:
            cells = f"{'-':>14}{'-':>9}{'-':>9}"
        lines.append(f"{kind:<16}{figures.faults[kind]:>7}{cells}")
    lines.append("-" * 55)
    if every:
        lines.append(
            f"{'all':<16}{sum(figures.faults.values()):>7}{percentile(every, 0.5):>13.2f}s"
            f"{percentile(every, 0.95):>8.2f}s{max(every):>8.2f}s"
        )
    lines += [
        "",
        f"worker restarts:  {figures.worker_restarts}",
        f"files:            {figures.done} done, {figures.failed} quarantined",
        f"total time:       {figures.seconds:.1f} s",
        f"throughput:       {figures.files_per_second:.2f} files/s",
    ]
    return "\n".join(lines)
