"""Recovery: what a fault means for the file, the model and the chain, decided on a clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from daemon.observing.metrics import Metrics
from daemon.protocol import Fault
from daemon.settings import RecoverySettings
from daemon.supervising.chains import DAEMONS
from daemon.supervising.recovery import Decision, Quarantine, Recovery, Requeue
from daemon.tasks import FileTask
from tests.supervising.fakes import FakeClock

CHAIN = ["qwen", "got", "rapid"]


def recovery(chain: list[str] | None = None, **settings: Any) -> tuple[Recovery, FakeClock]:
    clock = FakeClock()
    policy = Recovery(chain or CHAIN, RecoverySettings(**settings), metrics=Metrics(), clock=clock)
    return policy, clock


def task(name: str = "scan.png", override: str | None = None) -> FileTask:
    item = FileTask(Path("/in") / name, Path("/in"), "a" * 64, 1, 1, 0.0, 0.0)
    item.model_override = override
    return item


def fault(kind: Any = "empty_output") -> Fault:
    return Fault(kind=kind, message=f"{kind}!")


def test_a_lost_worker_retries_the_file_then_moves_it_to_the_next_model() -> None:
    """Below attempts_per_model the file goes back on the same model; at the limit, to the next one."""
    policy, _ = recovery(attempts_per_model=2, max_fatal_failures=10)
    file = task()
    assert policy.worker_lost("qwen", file, "crash", attempts=1) == Decision(Requeue(None))
    decision = policy.worker_lost("qwen", file, "crash", attempts=2)
    assert decision.file == Requeue("got")
    assert decision.left == {
        "model": "qwen",
        "outcome": "crash",
        "message": "the worker was lost 2 times on this file",
    }
    assert decision.demoted is None
    assert policy.active == "qwen"  # one file's trouble is not the model's


def test_a_file_that_kills_every_model_is_quarantined() -> None:
    """On the last model of the chain the next step is quarantine, never a loop."""
    policy, _ = recovery(attempts_per_model=1, max_fatal_failures=10)
    file = task(override="rapid")
    decision = policy.worker_lost("rapid", file, "hang", attempts=1)
    assert decision.file == Quarantine("every model of the chain failed on this file")
    assert decision.left is not None and decision.left["outcome"] == "hang"


def test_bad_output_moves_only_that_file() -> None:
    """Empty or degenerate output (and a surviving OOM) sends the file on; the chain stays."""
    policy, _ = recovery()
    file = task()
    decision = policy.model_failed_file("qwen", file, fault("degenerate_output"))
    assert decision == Decision(
        Requeue("got"),
        left={"model": "qwen", "outcome": "degenerate_output", "message": "degenerate_output!"},
    )
    oom = policy.model_failed_file("got", file, fault("oom"))
    assert oom.file == Requeue("rapid")
    assert policy.metrics.cuda_errors.labels(kind="oom")._value.get() == 1
    assert policy.active == "qwen"


def test_k_fatal_failures_demote_the_model_and_the_file_waits_for_the_next() -> None:
    """The K-th fatal failure in the window demotes the active model; the file in hand just waits."""
    policy, clock = recovery(max_fatal_failures=3, attempts_per_model=5)
    for attempt in (1, 2):
        assert policy.worker_lost("qwen", task(f"{attempt}.png"), "crash", attempt).demoted is None
        clock.advance(10)
    with capture_logs() as logs:
        decision = policy.worker_lost("qwen", task("3.png", override="qwen"), "cuda_fatal", 1)
    assert decision == Decision(
        Requeue(None), demoted="qwen", chains=(DAEMONS,)
    )  # no trail entry, no override
    assert policy.active == "got"
    assert {"event": "chain.fallback", "from_model": "qwen", "to_model": "got"}.items() <= (
        next(entry for entry in logs if entry["event"] == "chain.fallback").items()
    )


def test_failures_spread_wider_than_the_window_do_not_demote() -> None:
    """Fatal failures further apart than failure_window_seconds never add up to K."""
    policy, clock = recovery(max_fatal_failures=2, failure_window_seconds=60, attempts_per_model=9)
    for attempt in range(1, 5):
        assert policy.worker_lost("qwen", task(), "crash", attempt).demoted is None
        clock.advance(61)
    assert policy.active == "qwen"


def test_the_first_model_comes_back_after_the_cooldown() -> None:
    """Fail-back: after cooldown_seconds on a fallback the chain tries its first model again."""
    policy, clock = recovery(cooldown_seconds=600)
    assert policy.load_failed("qwen", fault("load_error")) == Decision(
        demoted="qwen", chains=(DAEMONS,)
    )
    assert policy.active == "got"
    clock.advance(599)
    policy.maintain(stopping=False)
    assert policy.active == "got"
    clock.advance(1)
    policy.maintain(stopping=True)
    assert policy.active == "got"  # a stopping daemon does not start a new model
    policy.maintain(stopping=False)
    assert policy.active == "qwen"


def test_a_per_file_model_that_cannot_load_is_skipped_from_then_on() -> None:
    """A fallback model that fails to load is unusable: its files, and later ones, go past it."""
    policy, clock = recovery(cooldown_seconds=60)
    assert policy.load_failed("got", fault("load_error")) == Decision(unloadable="got")
    assert not policy.usable("got")
    assert policy.active == "qwen"
    assert policy.next_model_for(task(), "qwen", "empty_output") == Requeue("rapid")
    # The chain never lands on it either, until a fail-back clears the slate.
    policy.load_failed("qwen", fault("load_error"))
    assert policy.active == "rapid"
    clock.advance(60)
    policy.maintain(stopping=False)
    assert policy.active == "qwen" and policy.usable("got")


def test_a_model_dying_while_loading_counts_as_one_fatal_failure() -> None:
    """One crash while loading (an OOM kill) is forgiven; K of them, or a hang, mean it cannot load."""
    policy, _ = recovery(max_fatal_failures=2)
    load = fault("load_error")
    assert policy.died_loading("qwen", "crash", load) == Decision()
    assert policy.active == "qwen"
    assert policy.died_loading("qwen", "crash", load) == Decision(demoted="qwen", chains=(DAEMONS,))
    assert policy.died_loading("rapid", "hang", load) == Decision(unloadable="rapid")


def test_the_last_model_gone_exhausts_the_chain() -> None:
    """With no model left the chain is exhausted (the daemon exits 3), and says so once."""
    policy, _ = recovery(["only"])
    with capture_logs() as logs:
        policy.load_failed("only", fault("load_error"))
    assert policy.exhausted and policy.active is None
    [exhausted] = [entry for entry in logs if entry["event"] == "chain.exhausted"]
    assert (exhausted["last"], exhausted["reason"], exhausted["held"]) == ("only", "load_error", 0)


def test_a_file_resumes_after_the_last_model_of_its_trail() -> None:
    """After a restart a file with a trail goes on below its last model, never above the active one."""
    policy, _ = recovery()
    assert policy.resume_model([]) is None
    assert policy.resume_model([{"model": "qwen"}]) == "got"
    assert policy.resume_model([{"model": "qwen"}, {"model": "got"}]) == "rapid"
    assert policy.resume_model([{"model": "rapid"}]) is None
    policy.load_failed("qwen", fault("load_error"))  # the chain moved down to got
    assert policy.resume_model([{"model": "qwen"}]) is None  # the active model is that one


def test_an_unavailable_server_demotes_its_model_without_counting_the_file() -> None:
    """'unavailable' moves the chain on; the file waits for the next model with no attempt or trail entry."""
    policy, _ = recovery()
    file = task()
    decision = policy.model_failed_file("qwen", file, fault("unavailable"))
    assert decision == Decision(Requeue(None), demoted="qwen", chains=(DAEMONS,))
    assert policy.active == "got" and policy.fallen_because == "qwen: unavailable"
    # The files it still had in flight fail the same way: they simply wait too.
    assert policy.model_failed_file("qwen", task("b.png"), fault("unavailable")) == Decision(
        Requeue(None)
    )
    assert policy.active == "got"


def test_a_server_that_answers_again_takes_the_chain_back() -> None:
    """fail_back goes back up to a model above the active one, and not to one below it."""
    policy, _ = recovery()
    policy.model_failed_file("qwen", task(), fault("unavailable"))
    policy.model_failed_file("got", task(), fault("unavailable"))
    assert policy.active == "rapid"
    assert not policy.fail_back("rapid")
    assert policy.fail_back("got") and policy.active == "got"
    assert policy.fail_back("qwen") and policy.active == "qwen"
    assert not policy.chain.cooldown_due()
