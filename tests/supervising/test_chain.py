"""ModelChain, driven by a clock the test moves."""

from __future__ import annotations

from daemon.settings import RecoverySettings
from daemon.supervising.chain import ModelChain
from tests.supervising.fakes import FakeClock


def chain(names: list[str] | None = None, **recovery: float) -> tuple[ModelChain, FakeClock]:
    clock = FakeClock()
    settings = RecoverySettings(**recovery)  # type: ignore[arg-type]
    return ModelChain(names or ["qwen", "got", "rapid"], settings, clock), clock


# --- ModelChain: demotion ---------------------------------------------------------


def test_k_fatal_failures_within_the_window_demote() -> None:
    """The K-th fatal failure of the active model within the window asks for a demotion."""
    models, clock = chain(max_fatal_failures=3, failure_window_seconds=600)
    assert models.active == "qwen"
    assert not models.record_fatal("qwen")
    clock.advance(200)
    assert not models.record_fatal("qwen")
    clock.advance(399)
    assert models.recent_failures("qwen") == 2
    assert models.record_fatal("qwen")
    assert models.demote() == "got"
    assert models.active == "got"
    assert models.position == 1


def test_failures_spread_wider_than_the_window_do_not_demote() -> None:
    """Failures older than the window are forgotten: K failures over a long time are fine."""
    models, clock = chain(max_fatal_failures=3, failure_window_seconds=600)
    for _ in range(10):
        assert not models.record_fatal("qwen")
        clock.advance(301)  # at most two failures ever within 600 s
    assert models.recent_failures("qwen") == 1
    assert models.active == "qwen"


def test_failures_of_another_model_do_not_demote_the_active_one() -> None:
    """A per-file fallback model's failures never move the whole daemon."""
    models, _ = chain(max_fatal_failures=2)
    for _ in range(5):
        assert not models.record_fatal("rapid")
    assert models.recent_failures("rapid") == 5
    assert not models.record_fatal("qwen")
    assert models.record_fatal("qwen")


def test_a_model_starts_with_a_clean_slate_when_it_becomes_active() -> None:
    """Failures a fallback model had as a per-file helper are not held against it once active."""
    models, _ = chain(max_fatal_failures=2)
    models.record_fatal("got")
    models.record_fatal("got")
    models.record_fatal("qwen")
    assert models.record_fatal("qwen")
    models.demote()
    assert models.recent_failures("got") == 0
    assert not models.record_fatal("got")
    assert models.record_fatal("got")


def test_demoting_past_the_last_model_exhausts_the_chain() -> None:
    """After the last model the chain has no active model: the daemon must exit."""
    models, _ = chain(["a", "b"])
    assert models.demote() == "b"
    assert not models.exhausted
    assert models.demote() is None
    assert models.exhausted
    assert models.active is None
    assert models.demote() is None


def test_after_names_the_next_model_for_one_file() -> None:
    """after() is the per-file fallback: the model following the named one, None at the end."""
    models, _ = chain(["qwen", "got", "rapid"])
    assert models.after("qwen") == "got"
    assert models.after("got") == "rapid"
    assert models.after("rapid") is None
    assert models.after("not-in-the-chain") is None
    models.demote()
    assert models.after("qwen") == "got"  # independent of which model is active


# --- ModelChain: cool-down ----------------------------------------------------------


def test_cooldown_tries_the_first_model_again() -> None:
    """cooldown_seconds after a demotion the first model is due again; promote() returns to it."""
    models, clock = chain(cooldown_seconds=600, max_fatal_failures=1)
    assert not models.cooldown_due()  # on the first model: nothing to cool down from
    models.record_fatal("qwen")
    models.demote()
    clock.advance(599)
    assert not models.cooldown_due()
    clock.advance(1)
    assert models.cooldown_due()
    assert models.promote() == "qwen"
    assert models.active == "qwen"
    assert models.position == 0
    assert models.recent_failures("qwen") == 0
    assert not models.cooldown_due()


def test_cooldown_counts_from_the_latest_demotion() -> None:
    """A second demotion (further down the chain) restarts the cool-down."""
    models, clock = chain(cooldown_seconds=100)
    models.demote()
    clock.advance(90)
    models.demote()
    clock.advance(20)
    assert models.active == "rapid"
    assert not models.cooldown_due()
    clock.advance(80)
    assert models.cooldown_due()


def test_an_exhausted_chain_is_never_promoted() -> None:
    """With no model left the daemon exits; the cool-down does not revive it."""
    models, clock = chain(["a"], cooldown_seconds=0)
    models.demote()
    clock.advance(10_000)
    assert models.exhausted
    assert not models.cooldown_due()
