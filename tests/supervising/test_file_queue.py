"""FileQueue: which files wait, in which order, and for which fallback model."""

from __future__ import annotations

from pathlib import Path

from daemon.supervising.file_queue import FileQueue
from daemon.tasks import FileTask
from daemon.watching.intake import Arrival


def task(name: str, override: str | None = None) -> FileTask:
    path = Path("/inbox") / name
    item = FileTask(path, Path("/inbox"), "a" * 64, 1, 1, admitted_at=0.0, admitted_wall=0.0)
    item.model_override = override
    return item


def test_order_and_retries_at_the_front() -> None:
    """Files wait in arrival order; a retried file goes to the front and keeps its turn."""
    queue = FileQueue()
    first, second, retried = task("a.png"), task("b.png"), task("c.png")
    queue.push(first, 1.0)
    queue.push(second, 2.0)
    queue.push(retried, 3.0, front=True)
    assert [item.name for item in queue] == ["c.png", "a.png", "b.png"]
    assert len(queue) == 3 and retried.queued_at == 3.0


def test_in_flight_files_are_held_but_not_waiting() -> None:
    """take() moves a file into flight: no longer waiting, still held until released."""
    queue = FileQueue()
    item = task("a.png")
    queue.push(item, 0.0)
    queue.take(item)
    assert len(queue) == 0 and queue.held == 1 and queue.get(item.path) is item
    assert queue.release(item) is None
    assert queue.held == 0 and queue.get(item.path) is None


def test_fallback_models_are_counted_while_queued() -> None:
    """Queued files needing a fallback model are counted by model, without walking the queue."""
    queue = FileQueue()
    one, two, plain = task("a.png", "rapid"), task("b.png", "rapid"), task("c.png")
    for item in (one, two, plain):
        queue.push(item, 0.0)
    assert queue.overrides == {"rapid": 2}
    queue.take(one)
    queue.drop(two)
    assert queue.overrides == {}


def test_clearing_a_fallback_moves_the_file_to_the_front_for_the_active_model() -> None:
    """clear_override(): no override, first in line, and no longer counted for the fallback model."""
    queue = FileQueue()
    plain, sent = task("a.png"), task("b.png", "rapid")
    queue.push(plain, 0.0)
    queue.push(sent, 0.0)
    queue.clear_override(sent, 5.0)
    assert [item.name for item in queue] == ["b.png", "a.png"]
    assert sent.model_override is None and sent.queued_at == 5.0
    assert queue.overrides == {} and queue.held == 2


def test_delayed_files_come_back_when_due() -> None:
    """A delayed file (outputs to retry) waits until its time, then is handed back once."""
    queue = FileQueue()
    item = task("a.png")
    queue.delay(item, until=10.0)
    assert len(queue) == 1 and queue.due(9.9) == []
    assert queue.due(10.0) == [item]
    assert queue.due(11.0) == [] and len(queue) == 0 and queue.held == 1


def test_an_arrival_for_a_file_in_flight_is_returned_on_release() -> None:
    """New content for a file being processed is looked at again once that file is finished."""
    queue = FileQueue()
    item = task("a.png")
    queue.push(item, 0.0)
    queue.take(item)
    arrival = Arrival(item.path, item.inbox, 2, 2, "b" * 64)
    queue.follow_up(arrival)
    assert queue.release(item) is arrival
    assert queue.release(item) is None
