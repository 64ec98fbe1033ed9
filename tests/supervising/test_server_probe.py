"""The server probe: asks the servers of models the chain left whether they serve again."""

from __future__ import annotations

import threading
import time

from daemon.settings import OpenAiModel
from daemon.supervising.server_probe import ServerProbe, server_answers
from harness.fake_server import FakeServer


def model_for(server: FakeServer, name: str | None = None) -> OpenAiModel:
    return OpenAiModel(
        base_url=server.url, model=name or server.served_model, probe_interval_seconds=0.2
    )


def test_a_server_answers_only_when_it_lists_the_model() -> None:
    """GET /models that lists the served name answers; another name, an error status or a closed port do not."""
    with FakeServer() as server:
        assert server_answers(model_for(server))
        assert not server_answers(model_for(server, "someone/else"))
        server.models_status = 401
        assert not server_answers(model_for(server))
    assert not server_answers(model_for(server))


def test_the_probe_wakes_the_loop_when_a_watched_server_comes_back() -> None:
    """Watched while down, the model shows up in answering() once its server is started, and the loop is woken."""
    server = FakeServer()
    woken = threading.Event()
    probe = ServerProbe(woken.set)
    try:
        probe.watch({"served": model_for(server)})
        time.sleep(0.5)
        assert probe.answering() == set() and not woken.is_set()
        server.start()
        assert woken.wait(5)
        assert probe.answering() == {"served"}
        probe.watch({})
        assert probe.answering() == set()
    finally:
        probe.close()
        server.stop()
