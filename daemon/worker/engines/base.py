"""The contract every engine fulfils, and the errors engines raise.

An engine is built and used only inside a worker process. The worker opens the
document, hands the engine RGB page images (in batches of `batch_size`), and
turns what comes back into results; the engine never touches files or pipes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from PIL import Image

from daemon.protocol import EngineInfo, GpuMemory, PageText, ServerRequest


@dataclass(frozen=True, slots=True)
class Runtime:
    """Where and how the worker runs the engine (from [worker] settings)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # 0: let the engine decide
    allow_download: bool = False


class EngineError(Exception):
    """An engine failed on a page; the worker lives on."""


class ModelNotFoundError(EngineError):
    """The model is not on this machine and downloads are not allowed."""


class EmptyOutputError(EngineError):
    """The model produced no text for a page (a VLM failure mode: fp16 NaNs, bad prompt)."""


class DegenerateOutputError(EngineError):
    """The model repeated a token or phrase until the token limit."""


class ServerUnavailableError(EngineError):
    """The inference server cannot serve the model now (down, overloaded past the
    retries, a wrong key or model name): not this file's fault, the chain falls back."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Engine(ABC):
    """A resident OCR engine. load() once, then recognize() many times."""

    def __init__(self, name: str, runtime: Runtime) -> None:
        self.name = name
        self.runtime = runtime
        # Where an engine that talks to a server reports each request (the worker
        # sends it to the supervisor's metrics); None: nobody listens.
        self.on_request: Callable[[ServerRequest], None] | None = None

    @property
    def batch_size(self) -> int:
        """How many pages one recognize() call may take."""
        return 1

    @property
    def concurrent_jobs(self) -> int:
        """How many files the worker may hold at once (an engine whose work happens
        elsewhere, a server, says more than one; then submit() is called from
        several threads)."""
        return 1

    def submit(self, page: Image.Image, prompt: str | None = None) -> Future[PageText]:
        """Start recognising one page; the future holds its text or its error.

        Engines with concurrent_jobs > 1 override this to keep many pages in
        flight (and may block here while too many are held); the default
        recognises at once. `prompt` is the page's inbox's instruction (None:
        the model's own); it travels with the page because concurrent files
        from different inboxes share one engine.
        """
        future: Future[PageText] = Future()
        try:
            future.set_result(self.recognize([page])[0])
        except Exception as error:
            future.set_exception(error)
        return future

    @abstractmethod
    def load(self) -> EngineInfo:
        """Load the model; raise ModelNotFoundError or EngineError when it cannot."""

    @abstractmethod
    def recognize(self, pages: Sequence[Image.Image]) -> list[PageText]:
        """Recognise RGB page images; one PageText per image, in order."""

    def begin_job(self, name: str, prompt: str | None = None) -> None:
        """A new document starts; `name` is its file name (for engines that log or inject by name).

        `prompt` is its inbox's instruction for a vision-language model (None:
        the model's own); engines that take no instruction ignore it.
        """

    def free_memory(self) -> None:
        """Release cached accelerator memory (after an out-of-memory error)."""

    def memory(self) -> tuple[GpuMemory, ...]:
        """Accelerator memory readings since the last reset_peak(); empty on CPU."""
        return ()

    def reset_peak(self) -> None:
        """Start a new peak-memory window (called before each job)."""

    def close(self) -> None:
        """Release the model."""
