"""Asking the servers of models the chain fell back from whether they serve again.

A model served by an inference server (engine = "openai") leaves the chain
when its server stops answering; the chain comes back to it as soon as the
server answers again, not after the general cool-down. The asking happens on
a thread of its own (an HTTP request must never stall the main loop): every
probe_interval_seconds it sends GET base_url/models with the model's key, and
a 200 that lists the served model (or lists none) counts as serving. The
loop reads the answers (`answering`) and tells the probe which models to
watch (`watch`); the thread only writes a set under a lock and wakes the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import structlog

from daemon.settings import OpenAiModel, Settings

log = structlog.get_logger(__name__)


def remote_models_above(
    settings: Settings, names: list[str], position: int | None
) -> dict[str, OpenAiModel]:
    """The models above the active one in the chain that a server serves."""
    above = names if position is None else names[:position]
    found: dict[str, OpenAiModel] = {}
    for name in above:
        model = settings.models.get(name)
        if isinstance(model, OpenAiModel):
            found[name] = model
    return found


def server_answers(model: OpenAiModel) -> bool:
    """Does the server list (or at least answer for) the served model now?"""
    try:
        key = model.read_api_key()
    except ValueError:
        return False
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = model.base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=headers, timeout=model.connect_timeout_seconds * 2)
        if response.status_code != 200:
            return False
        data = response.json().get("data") or []
        served = [str(entry.get("id")) for entry in data if isinstance(entry, dict)]
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return not served or model.model in served


class ServerProbe:
    def __init__(
        self, wake: Callable[[], None], ask: Callable[[OpenAiModel], bool] = server_answers
    ) -> None:
        self._wake = wake
        self._ask = ask
        self._lock = threading.Lock()
        self._watched: dict[str, OpenAiModel] = {}
        self._answering: set[str] = set()
        self._due: dict[str, float] = {}
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, models: dict[str, OpenAiModel]) -> None:
        """Probe exactly these models from now on (the main loop calls this every turn)."""
        with self._lock:
            if models.keys() == self._watched.keys():
                self._watched = dict(models)
                return
            for name in list(self._due):
                if name not in models:
                    self._due.pop(name)
                    self._answering.discard(name)
            for name in models:
                # Not at once: a server that just failed gets a moment first.
                self._due.setdefault(name, time.monotonic() + models[name].probe_interval_seconds)
            self._watched = dict(models)
        if models and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="server-probe", daemon=True)
            self._thread.start()
        self._changed.set()

    def answering(self) -> set[str]:
        """Watched models whose server answered at its last probe."""
        with self._lock:
            return set(self._answering)

    def close(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = [
                    (name, model)
                    for name, model in self._watched.items()
                    if self._due.get(name, 0.0) <= now
                ]
                for name, model in due:
                    self._due[name] = now + model.probe_interval_seconds
                wait = min((moment - now for moment in self._due.values()), default=60.0)
            for name, model in due:
                answers = self._ask(model)
                with self._lock:
                    if name not in self._watched:
                        continue
                    was = name in self._answering
                    if answers:
                        self._answering.add(name)
                    else:
                        self._answering.discard(name)
                if answers and not was:
                    log.info("server.answers", model=name, base_url=model.base_url)
                    self._wake()
            self._changed.wait(max(0.05, wait))
            self._changed.clear()
