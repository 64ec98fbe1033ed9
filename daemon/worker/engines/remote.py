"""A model behind an OpenAI-compatible inference server (vLLM, SGLang, `transformers serve`).

The worker holds up to twice `max_in_flight` files at once (concurrent_jobs);
each page is sent as soon as it is rendered and waits in a thread of this
engine's pool for its answer, so an in-flight request costs a thread and a socket, not a
process. At most max_in_flight requests are open, and at most twice that many
rendered pages are held (submit() blocks the file's thread, which stops
rendering, until a page is answered). A page is resized and encoded on its
file's thread, so the request threads only wait on the server. Prompts and
answer parsing are the family's (`families/`), the same code the in-process engine uses; the output
checks are the same rules too (empty, or a loop to the token limit, is an
error for the fallback chain). What each HTTP failure means is
`remote_http.py`'s table. No torch here: this engine runs on the base install.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog
from PIL import Image

from daemon.documents.decoding import BadInputError
from daemon.protocol import EngineInfo, PageText, ServerRequest
from daemon.settings import OpenAiModel
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    Engine,
    EngineError,
    Runtime,
    ServerUnavailableError,
)
from daemon.worker.engines.remote_http import Answer, ServerClient
from daemon.worker.families import build_family, family_from_served_name
from daemon.worker.families.base import Family, FamilyError, GenerationRequest
from daemon.worker.families.repetition import degenerate_period

log = structlog.get_logger("daemon.worker.engines.remote")

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class OpenAiEngine(Engine):
    def __init__(self, name: str, model: OpenAiModel, runtime: Runtime) -> None:
        super().__init__(name, runtime)
        self.settings = model
        self.family: Family | None = None
        self.client: ServerClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._held = threading.BoundedSemaphore(2 * model.max_in_flight)
        # Inboxes with their own prompt: one family each, built on first use.
        self._families: dict[str, Family] = {}
        self._families_lock = threading.Lock()

    @property
    def concurrent_jobs(self) -> int:
        # Twice the requests: while max_in_flight files wait for answers, as
        # many more are read and rendered and wait at submit() with a page
        # ready, so the server never waits for the next file to be opened or
        # for the supervisor to write the last one's outputs.
        return 2 * self.settings.max_in_flight

    # --- loading -------------------------------------------------------------------

    def family_name(self) -> str:
        if self.settings.family != "auto":
            return self.settings.family
        return family_from_served_name(self.settings.model)

    def load(self) -> EngineInfo:
        settings = self.settings
        try:
            family = build_family(self.family_name(), settings.mode, settings.prompt)
            api_key = settings.read_api_key()
        except (FamilyError, ValueError) as error:
            raise EngineError(f"model {self.name!r}: {error}") from error
        client = ServerClient(settings, api_key, report=self._report)
        try:
            served = client.served_models()
        except ServerUnavailableError:
            client.close()
            raise
        if served and settings.model not in served:
            client.close()
            raise ServerUnavailableError(
                f"model {self.name!r}: {settings.base_url} serves {served}, not {settings.model!r}",
                status=404,
            )
        self.family, self.client = family, client
        self._pool = ThreadPoolExecutor(settings.max_in_flight, thread_name_prefix="request")
        log.info(
            "remote.connected",
            base_url=settings.base_url,
            served_model=settings.model,
            family=family.name,
            max_in_flight=settings.max_in_flight,
        )
        return EngineInfo(
            engine="openai",
            model=self.name,
            device="remote",
            dtype="n/a",
            attention="n/a",
            family=family.name,
            details={
                "served_model": settings.model,
                "base_url": settings.base_url,
                "mode": family.mode,
                "custom_prompt": settings.prompt is not None,
                "max_new_tokens": settings.max_new_tokens,
                "max_in_flight": settings.max_in_flight,
                "image_format": settings.image_format,
                "min_pixels": settings.min_pixels,
                "max_pixels": settings.max_pixels,
            },
        )

    def _report(self, report: ServerRequest) -> None:
        if self.on_request is not None:
            self.on_request(report)

    # --- recognising ---------------------------------------------------------------

    def recognize(self, pages: Sequence[Image.Image]) -> list[PageText]:
        futures = [self.submit(page) for page in pages]
        return [future.result() for future in futures]

    def submit(self, page: Image.Image, prompt: str | None = None) -> Future[PageText]:
        if self._pool is None or self.family is None:
            raise EngineError(f"model {self.name!r} is not loaded")
        family = self._family_for(prompt)
        # Resized and encoded here, on the file's thread, so the request
        # threads only wait on the server: the next page is ready to go the
        # moment a request slot frees.
        sent_size, url = self._encode(page, family)
        self._held.acquire()  # blocks the file's thread: rendering waits for answers
        try:
            future = self._pool.submit(self._ask, family, page.size, sent_size, url)
        except RuntimeError:  # the pool was shut down meanwhile
            self._held.release()
            raise
        future.add_done_callback(lambda _: self._held.release())
        return future

    def _family_for(self, prompt: str | None) -> Family:
        """The way of asking for an inbox's prompt: built once per prompt, shared by its pages."""
        assert self.family is not None
        if prompt is None or prompt == self.settings.prompt:
            return self.family
        with self._families_lock:
            family = self._families.get(prompt)
            if family is None:
                try:
                    family = build_family(self.family.name, self.settings.mode, prompt)
                except FamilyError as error:
                    raise EngineError(f"model {self.name!r}: {error}") from error
                self._families[prompt] = family
        return family

    def _encode(self, page: Image.Image, family: Family) -> tuple[tuple[int, int], str]:
        """The size the page is sent at, and the page as a data URL."""
        request = GenerationRequest(
            max_new_tokens=self.settings.max_new_tokens,
            min_pixels=self.settings.min_pixels,
            max_pixels=self.settings.max_pixels,
        )
        sent_size = family.server_image_size(page.size, request) or _within(
            page.size, self.settings.max_pixels
        )
        image = page if sent_size == page.size else page.resize(sent_size, Image.Resampling.LANCZOS)
        return sent_size, self._data_url(image)

    def _ask(
        self, family: Family, page_size: tuple[int, int], sent_size: tuple[int, int], url: str
    ) -> PageText:
        assert self.client is not None
        answer = self.client.chat(
            {
                "model": self.settings.model,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": url}},
                            {"type": "text", "text": family.server_prompt()},
                        ],
                    }
                ],
                "max_tokens": self.settings.max_new_tokens,
                "temperature": 0.0,
            }
        )
        return self._page_text(family, page_size, answer, sent_size)

    def _data_url(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        fmt = self.settings.image_format
        if fmt == "png":
            image.save(buffer, "PNG", compress_level=1)  # speed over bytes on a local link
        else:
            image.save(buffer, fmt.upper(), quality=self.settings.jpeg_quality)
        data = buffer.getvalue()
        if len(data) > self.settings.max_image_bytes:
            raise BadInputError(
                "too_large_for_model",
                f"the page is {len(data)} bytes as {fmt}, more than max_image_bytes "
                f"({self.settings.max_image_bytes}) of model {self.name!r}",
            )
        return f"data:{_MIME[fmt]};base64," + base64.b64encode(data).decode("ascii")

    def _page_text(
        self, family: Family, page_size: tuple[int, int], answer: Answer, sent_size: tuple[int, int]
    ) -> PageText:
        stopped = {"stop": True, "length": False}.get(answer.finish_reason or "")
        limit = self.settings.max_new_tokens
        if stopped is not True:
            period = loop_period(answer.text)
            if period is not None:
                raise DegenerateOutputError(
                    f"model {self.name!r}: the answer repeats a {period}-long phrase until "
                    f"the limit of {limit} new tokens (ends with {answer.text[-60:]!r})"
                )
        if not answer.text.strip():
            raise EmptyOutputError(
                f"model {self.name!r} produced no text for a page "
                f"({answer.completion_tokens} token(s) generated)"
            )
        parsed = family.parse(answer.text, page_size, sent_size)
        details: dict[str, Any] = {
            "mode": family.mode,
            "prompt_tokens": answer.prompt_tokens,
            "hit_token_limit": None if stopped is None else not stopped,
            "request_seconds": round(answer.seconds, 4),
            "retries": answer.retries,
            "model_image_size": list(sent_size),
        }
        details.update(parsed.details)
        return PageText(
            text=parsed.text,
            blocks=parsed.blocks,
            tokens=answer.completion_tokens,
            details=details,
        )

    # --- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.client is not None:
            self.client.close()
            self.client = None


def _within(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    """The page's size, scaled down to at most max_pixels (kept as is without a limit)."""
    width, height = size
    if max_pixels is None or width * height <= max_pixels:
        return size
    scale = (max_pixels / (width * height)) ** 0.5
    return max(1, int(width * scale)), max(1, int(height * scale))


def loop_period(text: str) -> int | None:
    """The period of a loop that fills the end of an answer, by words and by characters.

    A server gives text, not token ids: words catch a repeated phrase,
    characters a repeated symbol ("!!!!") or a phrase without spaces.
    """
    words = text.split()
    vocabulary: dict[str, int] = {}
    word_ids = [vocabulary.setdefault(word, len(vocabulary)) for word in words]
    period = degenerate_period(word_ids)
    if period is not None:
        return period
    return degenerate_period([ord(char) for char in text[-4096:]])
