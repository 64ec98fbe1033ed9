"""One chat-completions request to an OpenAI-compatible server, and what its failures mean.

| what happened                               | retried            | then                              |
| ------------------------------------------- | ------------------ | --------------------------------- |
| connection refused / connect timeout        | yes, backing off   | ServerUnavailableError: fall back |
| 429, 502, 503, 504                          | yes, Retry-After   | ServerUnavailableError: fall back |
| 401, 403, 404 (wrong key or model name)     | no                 | ServerUnavailableError: fall back |
| 400 naming the context length, 413          | no                 | BadInputError: this page is too big |
| other 5xx                                   | yes, backing off   | EngineError: this file moves on   |
| truncated or non-JSON body                  | yes, backing off   | EngineError: this file moves on   |
| no answer within request_timeout_seconds    | no (the page is slow, not the server) | EngineError |
| other 4xx                                   | no                 | EngineError: this file moves on   |

"Fall back" means the model cannot serve now, whatever the file: the chain
moves to its next model and the file waits for it, so a server that is down
never turns the queued files into error sidecars. Every request ends in one
`ServerRequest` report for the metrics.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from daemon.documents.decoding import BadInputError
from daemon.protocol import ServerRequest
from daemon.settings import OpenAiModel
from daemon.worker.engines.base import EngineError, ServerUnavailableError

# Statuses that say "not now" rather than "not this": retried, honouring Retry-After.
BUSY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that say the model cannot be served with these settings.
REFUSED_STATUSES = frozenset({401, 403, 404})
# How vLLM, SGLang and transformers word a prompt longer than the model's context.
_CONTEXT_TOO_LONG = re.compile(
    r"context length|context_length|maximum model length|max_model_len|too many tokens"
    r"|longer than|exceeds? the (?:maximum|model)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A page's answer from the server, with what its `usage` said."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    retries: int


Reporter = Callable[[ServerRequest], None]


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, final: EngineError, delay: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.delay = delay


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a Retry-After header asks for: seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class ServerClient:
    """A thread-safe client for one server (httpx pools the connections)."""

    def __init__(
        self, settings: OpenAiModel, api_key: str | None, report: Reporter | None = None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._report = report
        self._in_flight = 0
        self._count_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(
                settings.request_timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            limits=httpx.Limits(
                max_connections=settings.max_in_flight + 2,
                max_keepalive_connections=settings.max_in_flight + 2,
            ),
        )

    def close(self) -> None:
        self._http.close()

    # --- the model list ------------------------------------------------------------

    def served_models(self) -> list[str]:
        """GET /models: the names the server serves (ServerUnavailableError when it does not answer)."""
        url = f"{self.base_url}/models"
        try:
            response = self._http.get(url, timeout=self.settings.connect_timeout_seconds * 2)
        except httpx.HTTPError as error:
            raise ServerUnavailableError(f"{url}: {_describe(error)}") from error
        if response.status_code != 200:
            raise ServerUnavailableError(
                f"{url} answered {response.status_code}", status=response.status_code
            )
        try:
            data = response.json().get("data") or []
            return [str(entry.get("id")) for entry in data if isinstance(entry, dict)]
        except (ValueError, AttributeError) as error:
            raise ServerUnavailableError(
                f"{url} answered something other than a model list"
            ) from error

    # --- one request ---------------------------------------------------------------

    def chat(self, payload: dict[str, Any]) -> Answer:
        """POST /chat/completions, retried as the failure deserves (see the module's table)."""
        began = time.monotonic()
        retries = 0
        while True:
            try:
                return self._attempt(payload, began, retries)
            except _Retry as retry:
                if retries >= self.settings.max_retries:
                    raise retry.final from None
                retries += 1
                delay = retry.delay
                if delay is None:
                    delay = self.settings.retry_backoff_seconds * 2 ** (retries - 1)
                time.sleep(min(delay, self.settings.retry_after_cap_seconds))

    def _attempt(self, payload: dict[str, Any], began: float, retries: int) -> Answer:
        url = f"{self.base_url}/chat/completions"
        started = time.monotonic()
        with self._count_lock:
            self._in_flight += 1
        try:
            response = self._http.post(url, json=payload)
            body = response.content
        except httpx.ConnectError as error:
            self._reported("unavailable", started)
            raise _Retry(
                ServerUnavailableError(f"cannot connect to {url}: {_describe(error)}")
            ) from error
        except httpx.ConnectTimeout as error:
            self._reported("unavailable", started)
            raise _Retry(
                ServerUnavailableError(
                    f"no connection to {url} within {self.settings.connect_timeout_seconds} s"
                )
            ) from error
        except httpx.TimeoutException as error:
            self._reported("timeout", started)
            raise EngineError(
                f"{url} gave no answer within request_timeout_seconds = "
                f"{self.settings.request_timeout_seconds}"
            ) from error
        except httpx.HTTPError as error:  # the connection broke mid-answer
            self._reported("garbled", started)
            raise _Retry(
                EngineError(f"{url}: the answer broke off ({_describe(error)})")
            ) from error
        status = response.status_code
        if status == 200:
            return self._answer(body, started, began, retries)
        message = _error_message(body)
        if status in BUSY_STATUSES:
            self._reported("busy", started, status)
            wait = retry_after_seconds(response.headers.get("retry-after"))
            raise _Retry(
                ServerUnavailableError(
                    f"{url} answered {status} after {retries + 1} tries: {message}", status=status
                ),
                delay=wait,
            )
        if status in REFUSED_STATUSES:
            self._reported("refused", started, status)
            raise ServerUnavailableError(
                f"{url} answered {status} (check base_url, model and the API key): {message}",
                status=status,
            )
        if status == 413 or (status == 400 and _CONTEXT_TOO_LONG.search(message)):
            self._reported("too_large", started, status)
            raise BadInputError(
                "too_large_for_model",
                f"the page is too large for the served model's context ({status}: {message})",
            )
        if status >= 500:
            self._reported("server_error", started, status)
            raise _Retry(EngineError(f"{url} answered {status}: {message}"))
        self._reported("error", started, status)
        raise EngineError(f"{url} answered {status}: {message}")

    def _answer(self, body: bytes, started: float, began: float, retries: int) -> Answer:
        try:
            document = json.loads(body)
            choice = document["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            self._reported("garbled", started, 200)
            raise _Retry(
                EngineError(f"the server's answer is not a chat completion ({body[:120]!r})")
            ) from error
        usage = document.get("usage") if isinstance(document.get("usage"), dict) else {}
        prompt_tokens = _count(usage.get("prompt_tokens"))
        completion_tokens = _count(usage.get("completion_tokens"))
        self._reported("ok", started, 200, prompt_tokens, completion_tokens)
        return Answer(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.monotonic() - began,
            retries=retries,
        )

    def _reported(
        self,
        outcome: str,
        started: float,
        status: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        with self._count_lock:
            self._in_flight -= 1
            in_flight = self._in_flight
        if self._report is not None:
            self._report(
                ServerRequest(
                    outcome,
                    time.monotonic() - started,
                    status,
                    prompt_tokens,
                    completion_tokens,
                    in_flight,
                )
            )


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 0 else None


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _error_message(body: bytes) -> str:
    """The server's error message (OpenAI's {"error": {"message": ...}} or FastAPI's {"detail": ...})."""
    try:
        document = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if document.get("message"):
            return str(document["message"])[:500]
        if document.get("detail"):
            return str(document["detail"])[:500]
    return str(document)[:300]
