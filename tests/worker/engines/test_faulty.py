"""The fault-injection engine: each fault is the real thing, fired by name pattern and probability.

Faults that end or stop the process (crash, segfault, hang, load faults) run
in a child Python process; the rest run here, on the engine object itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from typing import IO, Any

import pytest
import torch
from PIL import Image

from daemon.documents.opening import BadInputError
from daemon.settings import FaultRule, FaultyModel
from daemon.worker import faults
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    EngineError,
    Runtime,
)
from daemon.worker.engines.faulty import CRASH_EXIT_CODE, FaultyEngine
from harness.driver import REPO, wait_until

PAGE = Image.new("RGB", (300, 200), "white")


def engine(*rules: dict[str, Any], **model: Any) -> FaultyEngine:
    settings = FaultyModel(rules=[FaultRule(**rule) for rule in rules], **model)
    built = FaultyEngine("drill", settings, Runtime(device="cpu"))
    built.load()
    return built


CHILD_PRELUDE = textwrap.dedent(
    """
    from PIL import Image
    from daemon.settings import FaultyModel
    from daemon.worker.engines.base import Runtime
    from daemon.worker.engines.faulty import FaultyEngine
    PAGE = Image.new("RGB", (300, 200), "white")
    """
)


def run_child(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run engine code in a fresh interpreter (for faults that end the process)."""
    return subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- without faults -------------------------------------------------------------


def test_without_a_matching_rule_it_recognises_the_file_name_and_page_size() -> None:
    """A page comes back as one line naming the document and the image size, with a box."""
    fake = engine({"match": "poison-*", "fault": "crash"})
    info = fake.load()
    assert (info.engine, info.model, info.device) == ("faulty", "drill", "cpu")
    assert info.details == {"rules": 1}
    fake.begin_job("scan.png")
    [page] = fake.recognize([PAGE])
    assert page.text == "scan.png 300x200"
    assert page.lines[0].box == ((0.0, 0.0), (300.0, 0.0), (300.0, 200.0), (0.0, 200.0))
    assert page.lines[0].confidence == 1.0


def test_page_seconds_makes_each_page_take_at_least_that_long() -> None:
    """page_seconds sleeps per page, so tests can have a file in flight."""
    fake = engine(page_seconds=0.2)
    fake.begin_job("slow.png")
    started = time.monotonic()
    assert len(fake.recognize([PAGE, PAGE])) == 2
    assert time.monotonic() - started >= 0.4


# --- choosing the fault -----------------------------------------------------------


def test_rules_match_file_names_by_pattern() -> None:
    """A rule fires only for names its fnmatch pattern matches; the first matching rule wins."""
    fake = engine(
        {"match": "*-empty.png", "fault": "empty"},
        {"match": "bad-*", "fault": "error"},
        {"match": "*", "fault": "degenerate", "probability": 0.0},
    )
    fake.begin_job("page-empty.png")
    with pytest.raises(EmptyOutputError):
        fake.recognize([PAGE])
    fake.begin_job("bad-page-empty.png")  # both match: the first rule decides
    with pytest.raises(EmptyOutputError):
        fake.recognize([PAGE])
    fake.begin_job("bad-one.png")
    with pytest.raises(EngineError, match="injected engine error"):
        fake.recognize([PAGE])
    fake.begin_job("good.png")  # matches only the rule that never fires
    assert fake.recognize([PAGE])[0].text == "good.png 300x200"


def test_the_fault_is_chosen_once_per_document() -> None:
    """Every page of a document shares the document's draw, and the next document draws anew."""
    fake = engine({"match": "*", "fault": "error", "probability": 0.5}, seed=7)
    outcomes = []
    for index in range(200):
        fake.begin_job(f"doc-{index}.pdf")
        failures = 0
        for _ in range(3):
            try:
                fake.recognize([PAGE])
            except EngineError:
                failures += 1
        assert failures in (0, 3)
        outcomes.append(failures == 3)
    assert 50 < sum(outcomes) < 150


def test_probability_draws_repeat_for_a_seed_within_one_process() -> None:
    """Two engines with the same seed in the same process fire on the same files."""

    def fired(seed: int) -> list[bool]:
        fake = engine({"fault": "error", "probability": 0.3}, seed=seed)
        result = []
        for index in range(100):
            fake.begin_job(f"f{index}.png")
            try:
                fake.recognize([PAGE])
                result.append(False)
            except EngineError:
                result.append(True)
        return result

    first = fired(42)
    assert first == fired(42)
    assert 10 < sum(first) < 50
    assert first != fired(43)


# --- faults the worker survives ------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "exception", "kind"),
    [
        ("oom", RuntimeError, "oom"),
        ("cuda_fatal", RuntimeError, "cuda_fatal"),
        ("empty", EmptyOutputError, "empty_output"),
        ("degenerate", DegenerateOutputError, "degenerate_output"),
        ("error", EngineError, "engine_error"),
        ("bad_input", BadInputError, "bad_input"),
    ],
)
def test_raised_faults_classify_as_the_real_failure_would(
    fault: str, exception: type[Exception], kind: str
) -> None:
    """Each raised fault is the exception the real failure raises, and classifies the same way."""
    fake = engine({"fault": fault})
    fake.begin_job("x.png")
    with pytest.raises(exception) as caught:
        fake.recognize([PAGE])
    assert faults.classify(caught.value) == kind
    if fault == "cuda_fatal":
        assert faults.describe(caught.value).detail == {"cuda_kind": "device_assert"}


def test_oom_transient_fails_at_full_size_and_fits_smaller() -> None:
    """oom_transient raises CUDA OOM at the document's first (full) size and passes once shrunk."""
    fake = engine({"fault": "oom_transient"})
    fake.begin_job("big.png")
    with pytest.raises(RuntimeError) as caught:
        fake.recognize([PAGE])
    assert faults.classify(caught.value) == "oom"
    smaller = PAGE.resize((210, 140))
    assert fake.recognize([smaller])[0].text == "big.png 210x140"
    with pytest.raises(RuntimeError):
        fake.recognize([PAGE])  # full size still does not fit
    fake.begin_job("next.png")  # a new document measures its own full size
    with pytest.raises(RuntimeError):
        fake.recognize([smaller])


def test_oom_real_is_a_real_oom_at_full_size_on_cuda_and_an_engine_error_without() -> None:
    """oom_real: on a GPU a real OOM at full size and a working small computation once shrunk; else an engine error."""
    fake = engine({"fault": "oom_real"})
    fake.begin_job("big.png")
    smaller = PAGE.resize((210, 140))
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="needs a CUDA device"):
            fake.recognize([PAGE])
        return
    with pytest.raises(torch.OutOfMemoryError) as caught:
        fake.recognize([PAGE])
    assert faults.is_oom(caught.value)
    assert fake.recognize([smaller])[0].text == "big.png 210x140"


def test_leak_grows_the_process_by_leak_megabytes_per_page() -> None:
    """leak keeps leak_megabytes of touched memory per page, resident in the process."""
    # In a fresh process: in the test runner's own process, memory freed by
    # earlier tests can be reused by the allocator and hide the growth.
    result = run_child(
        """
        import json, psutil
        from daemon.settings import FaultRule
        fake = FaultyEngine(
            "drill", FaultyModel(rules=[FaultRule(fault="leak")], leak_megabytes=48), Runtime()
        )
        fake.load()
        fake.begin_job("leaky.png")
        before = psutil.Process().memory_info().rss
        text = fake.recognize([PAGE])[0].text
        fake.recognize([PAGE])
        grown = psutil.Process().memory_info().rss - before
        print(json.dumps({"text": text, "grown": grown}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["text"] == "leaky.png 300x200"
    assert report["grown"] >= 90 * 1024 * 1024  # two pages of 48 MiB, touched


def test_cuda_assert_real_is_a_device_side_assert_on_cuda_and_an_engine_error_without() -> None:
    """On a GPU the fault is a real device-side assert (cuda_fatal); without one, an engine error."""
    result = run_child(
        """
        import json
        from daemon.settings import FaultRule
        from daemon.worker import faults
        engine = FaultyEngine(
            "gpu", FaultyModel(rules=[FaultRule(fault="cuda_assert_real")]), Runtime()
        )
        engine.load()
        engine.begin_job("x.png")
        try:
            engine.recognize([PAGE])
        except Exception as exc:
            fault = faults.describe(exc)
            print(json.dumps({"kind": fault.kind, "detail": fault.detail, "message": fault.message}))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    if torch.cuda.is_available():
        assert reported["kind"] == "cuda_fatal"
        assert reported["detail"] == {"cuda_kind": "device_assert"}
    else:
        assert reported["kind"] == "engine_error"
        assert "needs a CUDA device" in reported["message"]


# --- faults that end or stop the process ------------------------------------------------


def test_crash_exits_the_process_at_once() -> None:
    """crash ends the process with os._exit (no cleanup, no exception to catch)."""
    result = run_child(
        """
        from daemon.settings import FaultRule
        engine = FaultyEngine("c", FaultyModel(rules=[FaultRule(fault="crash")]), Runtime())
        engine.load()
        engine.begin_job("x.png")
        try:
            engine.recognize([PAGE])
        finally:
            print("cleanup ran")
        """
    )
    assert result.returncode == CRASH_EXIT_CODE
    assert "cleanup ran" not in result.stdout


def test_segfault_kills_the_process_with_sigsegv() -> None:
    """segfault ends the process by the SIGSEGV signal, as a crash in native code does."""
    result = run_child(
        """
        import faulthandler
        faulthandler.disable()
        from daemon.settings import FaultRule
        engine = FaultyEngine("s", FaultyModel(rules=[FaultRule(fault="segfault")]), Runtime())
        engine.load()
        engine.begin_job("x.png")
        engine.recognize([PAGE])
        """
    )
    assert result.returncode == -signal.SIGSEGV


def read_until(stream: IO[str], marker: str) -> None:
    """Read the child's lines (its log lines among them) up to the marker line."""
    for line in stream:
        if line.strip() == marker:
            return
    raise AssertionError(f"the child ended before printing {marker!r}")


def assert_hangs_after(marker: str, body: str) -> None:
    """The child prints `marker`, then must still be running 2 s later (then it is killed)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        read_until(child.stdout, marker)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=2)
    finally:
        child.kill()
        child.wait()


def test_hang_never_returns() -> None:
    """hang blocks the page forever: only a deadline (or a signal) ends it."""
    assert_hangs_after(
        "recognising",
        """
        from daemon.settings import FaultRule
        engine = FaultyEngine("h", FaultyModel(rules=[FaultRule(fault="hang")]), Runtime())
        engine.load()
        engine.begin_job("x.png")
        print("recognising", flush=True)
        engine.recognize([PAGE])
        print("returned", flush=True)
        """,
    )


def ignores_sigterm(pid: int) -> bool:
    """Whether the process has set SIGTERM to ignored (the SigIgn mask in /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_stuck_ignores_sigterm_and_only_sigkill_ends_it() -> None:
    """stuck hangs like hang but survives SIGTERM, as a process blocked in a driver call does."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_PRELUDE
            + textwrap.dedent(
                """
                from daemon.settings import FaultRule
                engine = FaultyEngine("s", FaultyModel(rules=[FaultRule(fault="stuck")]), Runtime())
                engine.load()
                engine.begin_job("x.png")
                print("recognising", flush=True)
                engine.recognize([PAGE])
                """
            ),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        read_until(child.stdout, "recognising")
        wait_until(lambda: ignores_sigterm(child.pid), timeout=30)
        child.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1.5)
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_load_faults() -> None:
    """load_fault makes load() raise, exit the process, or never return."""
    with pytest.raises(EngineError, match="injected load failure"):
        FaultyEngine("e", FaultyModel(load_fault="error"), Runtime()).load()
    crashed = run_child('FaultyEngine("c", FaultyModel(load_fault="crash"), Runtime()).load()')
    assert crashed.returncode == CRASH_EXIT_CODE
    assert_hangs_after(
        "loading",
        """
        print("loading", flush=True)
        FaultyEngine("h", FaultyModel(load_fault="hang"), Runtime()).load()
        print("loaded", flush=True)
        """,
    )
