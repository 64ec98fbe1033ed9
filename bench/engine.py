"""The daemon's embedded engine called directly, in this process: the baseline of every part.

The pages are what the worker would give the engine: the file's bytes opened
with daemon.documents.opening.open_document under the same limits (PDF pages rendered
at limits.pdf_dpi), then RapidEngine.recognize page by page, as
daemon.worker.main does for an engine whose batch size is 1.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from daemon.documents.opening import open_document
from daemon.settings import LimitsSettings, RapidModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.rapid import RapidEngine


@dataclass(frozen=True)
class FileText:
    """What the engine read from one file, and the seconds recognition took (pages opened apart)."""

    pages: list[str]
    seconds: float

    @property
    def text(self) -> str:
        return "\n\n".join(self.pages)


def page_images(path: Path, limits: LimitsSettings) -> list[Image.Image]:
    """The RGB pages the worker would hand the engine for this file."""
    with open_document(path.read_bytes(), limits, name=path.name) as document:
        return [page.image for page in document.pages()]


@contextmanager
def rapid_engine(model: RapidModel | None = None, threads: int = 0) -> Iterator[RapidEngine]:
    """A loaded RapidEngine with the daemon's defaults (or `model`), closed on the way out.

    `threads` is [worker] threads; model.threads, when set, wins, as in the worker.
    """
    engine = RapidEngine("rapid", model or RapidModel(), Runtime(device="cpu", threads=threads))
    engine.load()
    try:
        yield engine
    finally:
        engine.close()
        del engine
        gc.collect()


def recognise(engine: RapidEngine, pages: list[Image.Image]) -> FileText:
    began = time.perf_counter()
    texts = [engine.recognize([page])[0].text for page in pages]
    return FileText(texts, time.perf_counter() - began)
