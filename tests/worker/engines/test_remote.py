"""The remote engine against the fault-injecting server: each failure means what the table says."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from daemon.documents.decoding import BadInputError
from daemon.protocol import ServerRequest
from daemon.settings import OpenAiModel
from daemon.worker import faults
from daemon.worker.engines import build_engine
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    EngineError,
    Runtime,
    ServerUnavailableError,
)
from daemon.worker.engines.remote import OpenAiEngine, loop_period
from harness.fake_server import FakeServer, Reply

PAGE = Image.new("RGB", (300, 200), "white")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def engine_for(server: FakeServer, **settings: Any) -> OpenAiEngine:
    values: dict[str, Any] = {
        "base_url": server.url,
        "model": server.served_model,
        "retry_backoff_seconds": 0.01,
        "max_retries": 2,
    }
    values.update(settings)
    engine = build_engine("remote", OpenAiModel(**values), Runtime())
    assert isinstance(engine, OpenAiEngine)
    reports: list[ServerRequest] = []
    engine.on_request = reports.append
    engine.load()
    engine.reports = reports  # type: ignore[attr-defined]
    return engine


def test_a_page_goes_to_the_server_as_an_image_and_a_prompt() -> None:
    """The request carries the served name, the family's prompt and the page as a data URL at the size the family chose."""
    with FakeServer() as server:
        engine = engine_for(server, max_new_tokens=77)
        [page] = engine.recognize([PAGE])
        engine.close()
    [seen] = server.seen
    assert seen.payload["model"] == server.served_model and seen.payload["max_tokens"] == 77
    image_part, text_part = seen.payload["messages"][0]["content"]
    assert text_part["text"].startswith("Read all the text in this image and return it as Markdown")
    header, data = image_part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    sent = Image.open(io.BytesIO(base64.b64decode(data)))
    assert sent.size == (308, 196)  # Qwen's smart_resize: multiples of 28
    assert page.text == "Hello from the server."
    assert page.details["model_image_size"] == [308, 196] and page.details["retries"] == 0
    assert page.details["prompt_tokens"] == 100 and page.tokens == 4


def test_an_inboxs_prompt_travels_with_its_pages_only() -> None:
    """Pages submitted with an inbox's prompt ask with it; pages without one keep the model's own."""
    with FakeServer() as server:
        engine = engine_for(server)
        asked = engine.submit(PAGE, "Transcribe the whiteboard.")
        plain = engine.submit(PAGE)
        asked.result(), plain.result()
        engine.close()
    prompts = sorted(seen.payload["messages"][0]["content"][1]["text"] for seen in server.seen)
    assert prompts[1] == "Transcribe the whiteboard."
    assert prompts[0].startswith("Read all the text in this image and return it as Markdown")


def test_load_reports_the_served_model_and_family_but_never_the_key(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key from api_key_env goes in the Authorization header and nowhere in EngineInfo."""
    monkeypatch.setenv("TEST_REMOTE_KEY", "sk-secret-123")
    settings = OpenAiModel(
        base_url=server.url, model=server.served_model, api_key_env="TEST_REMOTE_KEY"
    )
    engine = OpenAiEngine("remote", settings, Runtime())
    info = engine.load()
    engine.recognize([PAGE])
    engine.close()
    assert (info.engine, info.family, info.details["served_model"]) == (
        "openai",
        "qwen2_vl",
        server.served_model,
    )
    assert "sk-secret-123" not in repr(info) and "sk-secret-123" not in settings.model_dump_json()
    assert server.seen[0].headers["Authorization"] == "Bearer sk-secret-123"


def test_a_missing_key_variable_is_a_load_error(server: FakeServer) -> None:
    """A named key variable that is unset stops the load with its name, not a 401 per page."""
    settings = OpenAiModel(base_url=server.url, model="m", api_key_env="NO_SUCH_VARIABLE_HERE")
    with pytest.raises(EngineError, match="NO_SUCH_VARIABLE_HERE"):
        OpenAiEngine("remote", settings, Runtime()).load()


def test_a_server_serving_another_model_cannot_serve(server: FakeServer) -> None:
    """Load fails as unavailable when /v1/models does not list the configured name."""
    settings = OpenAiModel(base_url=server.url, model="someone/else")
    with pytest.raises(ServerUnavailableError, match="someone/else"):
        OpenAiEngine("remote", settings, Runtime()).load()


def test_connection_refused_is_unavailable() -> None:
    """A closed port, at load and per request after retries, is 'unavailable' (the chain falls back)."""
    server = FakeServer().start()
    engine = engine_for(server)
    server.stop()
    with pytest.raises(ServerUnavailableError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert faults.describe(raised.value).kind == "unavailable"
    assert [report.outcome for report in engine.reports] == ["unavailable"] * 3  # type: ignore[attr-defined]
    with pytest.raises(ServerUnavailableError):
        OpenAiEngine("remote", OpenAiModel(base_url=server.url, model="m"), Runtime()).load()


def test_429_is_retried_after_the_wait_the_server_asks_for(server: FakeServer) -> None:
    """A 429 with Retry-After: 1 is tried again about a second later, then answers."""
    engine = engine_for(server)
    server.then(Reply("status", status=429, retry_after="1"))
    began = time.monotonic()
    [page] = engine.recognize([PAGE])
    elapsed = time.monotonic() - began
    engine.close()
    assert page.text == "Hello from the server." and page.details["retries"] == 1
    assert elapsed >= 0.95
    assert server.seen[1].began - server.seen[0].began >= 0.95


def test_503_that_persists_is_unavailable_with_its_status(server: FakeServer) -> None:
    """503 on every try: unavailable after max_retries, the status in the fault's detail."""
    engine = engine_for(server)
    server.default = Reply("status", status=503)
    with pytest.raises(ServerUnavailableError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert server.requests == 3
    assert faults.describe(raised.value).detail["status"] == "503"
    assert {report.status for report in engine.reports} == {503}  # type: ignore[attr-defined]


def test_other_5xx_is_retried_then_fails_the_file_not_the_server(server: FakeServer) -> None:
    """A 500 once is retried and answers; a 500 every time is an engine error (this file moves on)."""
    engine = engine_for(server)
    server.then(Reply("status", status=500))
    assert engine.recognize([PAGE])[0].text == "Hello from the server."
    server.default = Reply("status", status=500)
    with pytest.raises(EngineError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert not isinstance(raised.value, ServerUnavailableError)
    assert faults.describe(raised.value).kind == "engine_error"


def test_a_page_too_large_for_the_context_is_bad_input(server: FakeServer) -> None:
    """A 400 naming the context length is bad input for that file, not a server fault (no retry)."""
    engine = engine_for(server)
    message = (
        "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens."
    )
    server.default = Reply("status", status=400, message=message)
    with pytest.raises(BadInputError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert raised.value.code == "too_large_for_model" and server.requests == 1
    assert faults.describe(raised.value).kind == "bad_input"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_wrong_key_or_model_name_cannot_serve(server: FakeServer, status: int) -> None:
    """401, 403 and 404 are not retried and say 'unavailable': the chain falls back, files wait."""
    engine = engine_for(server)
    server.default = Reply("status", status=status, message="nope")
    with pytest.raises(ServerUnavailableError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert server.requests == 1 and raised.value.status == status


@pytest.mark.parametrize("kind", ["garbled", "truncated"])
def test_a_broken_body_is_retried_then_an_engine_error(server: FakeServer, kind: str) -> None:
    """A non-JSON or cut-off body is tried again; once is survived, always is an engine error."""
    engine = engine_for(server)
    server.then(Reply(kind))
    assert engine.recognize([PAGE])[0].text == "Hello from the server."
    server.default = Reply(kind)
    with pytest.raises(EngineError) as raised:
        engine.recognize([PAGE])
    engine.close()
    assert faults.describe(raised.value).kind == "engine_error"


def test_no_answer_within_the_timeout_is_an_engine_error(server: FakeServer) -> None:
    """A request that hangs ends at request_timeout_seconds as this file's engine error."""
    engine = engine_for(server, request_timeout_seconds=0.5)
    server.default = Reply("hang")
    began = time.monotonic()
    with pytest.raises(EngineError, match="request_timeout_seconds"):
        engine.recognize([PAGE])
    assert time.monotonic() - began < 5
    server.stop()
    engine.close()
    assert engine.reports[-1].outcome == "timeout"  # type: ignore[attr-defined]


def test_empty_and_looping_answers_fail_as_in_process(server: FakeServer) -> None:
    """An empty answer and a loop to the token limit raise the same errors as the in-process engine."""
    engine = engine_for(server)
    server.then(Reply("empty"), Reply("loop", finish_reason="length"))
    with pytest.raises(EmptyOutputError):
        engine.recognize([PAGE])
    with pytest.raises(DegenerateOutputError):
        engine.recognize([PAGE])
    engine.close()


def test_a_loop_is_found_by_words_or_by_characters() -> None:
    """Repeated phrases and repeated symbols are loops; ordinary text is not."""
    assert loop_period("a b c " + "one two three " * 20) == 3
    assert loop_period("Total: " + "!" * 100) == 1
    assert loop_period("An ordinary page of text, with words that do not repeat at all.") is None


def test_the_dots_family_turns_server_layout_json_into_blocks(server: FakeServer) -> None:
    """dots.ocr's layout JSON from the server becomes Markdown and blocks, boxes in page pixels."""
    server.served_model = "rednote-hilab/dots.ocr"
    answer = '[{"bbox": [0, 0, 308, 98], "category": "Title", "text": "# Invoice"}]'
    server.default = Reply(text=answer)
    engine = engine_for(server)
    [page] = engine.recognize([PAGE])
    engine.close()
    assert "Invoice" in page.text
    assert page.blocks and page.blocks[0].category == "Title"
    assert page.blocks[0].box is not None and page.blocks[0].box[2] == pytest.approx(300, abs=1)


def test_many_pages_are_in_flight_at_once(server: FakeServer) -> None:
    """submit() keeps up to max_in_flight requests open together, no more."""
    engine = engine_for(server, max_in_flight=8)
    server.default = Reply(delay=0.3)
    began = time.monotonic()
    futures = [engine.submit(PAGE) for _ in range(16)]
    texts = [future.result().text for future in futures]
    elapsed = time.monotonic() - began
    engine.close()
    assert texts == ["Hello from the server."] * 16
    assert server.max_in_flight == 8
    assert elapsed < 0.3 * 16 / 2


def test_the_remote_engine_and_every_family_import_without_torch() -> None:
    """The remote engine runs on the base install: it and every family module load without torch."""
    import subprocess
    import sys

    code = (
        "import sys, importlib\n"
        "from daemon.worker.families import FAMILIES\n"
        "import daemon.worker.engines.remote\n"
        "for path in FAMILIES.values():\n"
        "    importlib.import_module(path.partition(':')[0])\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
