"""Each chain's own fallback state: the daemon's chain and the inboxes' chains, on a clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.observing.metrics import Metrics
from daemon.protocol import EngineInfo, Fault
from daemon.settings import RecoverySettings
from daemon.supervising.chains import DAEMONS
from daemon.supervising.recovery import Recovery, Requeue
from daemon.tasks import FileTask
from tests.supervising.fakes import FakeClock

DAEMON_CHAIN = ["rapid"]
PHOTOS = ("vlm", "got", "rapid")
BOARDS = ("vlm",)
INBOXES = {("rapid",): ["letters"], PHOTOS: ["photos"], BOARDS: ["boards", "walls"]}


def recovery(**settings: Any) -> tuple[Recovery, FakeClock, Metrics]:
    clock, metrics = FakeClock(), Metrics()
    policy = Recovery(
        DAEMON_CHAIN,
        RecoverySettings(**{"max_fatal_failures": 2, "cooldown_seconds": 300, **settings}),
        metrics=metrics,
        clock=clock,
        resident=[PHOTOS, BOARDS],
        inboxes=INBOXES,
    )
    return policy, clock, metrics


def task(chain: tuple[str, ...], model: str) -> FileTask:
    item = FileTask(Path("/in/scan.png"), Path("/in"), "a" * 64, 1, 1, 0.0, 0.0)
    item.chain, item.model_override = chain, model
    return item


def position(metrics: Metrics, inbox: str) -> float | None:
    return metrics.registry.get_sample_value("ocr_inbox_chain_position", {"inbox": inbox})


def test_every_inbox_starts_at_the_head_of_its_chain() -> None:
    """At start each inbox's series says position 0, and the resident models are each chain's head."""
    policy, _, metrics = recovery()
    assert [position(metrics, name) for name in ("letters", "photos", "boards", "walls")] == [0] * 4
    assert policy.resident_models() == ["vlm"]


def test_a_shared_model_failing_moves_every_chain_it_serves() -> None:
    """K deaths of a model two inboxes' chains share: one moves down, the other waits; the daemon's stays."""
    policy, clock, metrics = recovery()
    policy.worker_lost("vlm", task(PHOTOS, "vlm"), "crash", 1)
    clock.advance(1)
    decision = policy.worker_lost("vlm", task(BOARDS, "vlm"), "crash", 1)
    assert decision.demoted == "vlm" and set(decision.chains) == {PHOTOS, BOARDS}
    assert decision.file == Requeue("vlm")  # the board waits for its chain's cool-down
    assert policy.waits(BOARDS) and not policy.waits(PHOTOS) and not policy.exhausted
    assert policy.resident_models() == ["got"]
    assert policy.chains.benched() == {"vlm"}
    assert (
        position(metrics, "photos"),
        position(metrics, "boards"),
        position(metrics, "walls"),
    ) == (
        1,
        -1,
        -1,
    )
    assert position(metrics, "letters") == 0
    moved = metrics.registry.get_sample_value(
        "ocr_inbox_fallbacks_total",
        {"from_model": "vlm", "to_model": "got", "reason": "crash", "scope": "inbox"},
    )
    assert moved == 1


def test_a_file_is_admitted_at_its_chains_active_model() -> None:
    """After its chain moved down, a new file of the inbox starts at the chain's active model."""
    policy, _, _ = recovery(max_fatal_failures=1)
    policy.worker_lost("vlm", task(PHOTOS, "vlm"), "crash", 1)
    assert policy.resume_model([], PHOTOS) == "got"
    trail = [{"model": "got", "outcome": "empty_output"}]
    assert policy.resume_model(trail, PHOTOS) == "rapid"  # its trail is further down still


def test_each_chain_comes_back_after_its_own_cooldown() -> None:
    """The cool-down brings a fallen chain back to its head and retries a waiting one."""
    policy, clock, metrics = recovery(max_fatal_failures=1)
    policy.worker_lost("vlm", task(BOARDS, "vlm"), "crash", 1)
    assert policy.waits(BOARDS)
    clock.advance(299)
    policy.maintain(stopping=False)
    assert policy.waits(BOARDS)
    clock.advance(1)
    policy.maintain(stopping=False)
    assert not policy.waits(BOARDS) and policy.chains.of(PHOTOS).active == "vlm"
    assert (position(metrics, "photos"), position(metrics, "boards")) == (0, 0)


def test_the_daemons_chain_with_no_model_left_ends_the_daemon() -> None:
    """Unlike an inbox's chain, the daemon's own chain exhausted means exit (no waiting)."""
    policy, _, _ = recovery(max_fatal_failures=1)
    policy.load_failed("rapid", Fault(kind="load_error", message="no weights"))
    assert policy.exhausted
    assert DAEMONS not in policy.chains.others


def test_a_server_back_promotes_every_chain_it_is_above() -> None:
    """fail_back takes each chain that fell below the model back up to it, counted per scope."""
    policy, _, metrics = recovery()
    unavailable = Fault(kind="unavailable", message="connection refused")
    decision = policy.model_unavailable("vlm", task(PHOTOS, "vlm"), unavailable)
    assert decision.file == Requeue("got") and policy.waits(BOARDS)
    assert policy.fail_back("vlm")
    assert policy.chains.of(PHOTOS).active == "vlm"
    assert not policy.waits(BOARDS)  # a waiting chain need not wait for its cool-down
    assert (position(metrics, "photos"), position(metrics, "boards")) == (0, 0)


def test_new_inbox_names_keep_the_loaded_models_info() -> None:
    """A reload that renames an inbox moves the series to the new name, with the model's info."""
    policy, _, metrics = recovery()
    info = EngineInfo(model="vlm", engine="faulty", device="cpu", dtype="none", attention="none")
    policy.chains.model_loaded("vlm", info)
    renamed = {**INBOXES, PHOTOS: ["pictures"]}
    policy.reset(DAEMON_CHAIN, policy.settings, [PHOTOS, BOARDS], renamed)
    labels = {"inbox": "pictures", "model": "vlm", "engine": "faulty", "device": "cpu"}
    series = metrics.registry.get_sample_value(
        "ocr_inbox_active_model_info", {**labels, "dtype": "none", "attention": "none"}
    )
    assert series == 1
    assert position(metrics, "photos") is None and position(metrics, "pictures") == 0
