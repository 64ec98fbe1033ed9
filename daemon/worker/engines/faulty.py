"""A fault-injection engine for tests and drills: it fails on command.

Selected in the settings (`engine = "faulty"`) with rules that match file
names (fnmatch) and fire with a probability. Each fault is the real thing, not
a flag: `crash` exits the process, `segfault` raises SIGSEGV, `hang` stops
answering (`stuck` also ignores SIGTERM), `leak` grows the process, and the
CUDA-style faults raise the very messages PyTorch raises, so the same
classification and recovery run as in production; `cuda_assert_real`
triggers a real device-side assert on a GPU, and `oom_real` a real
out-of-memory error there. Without a matching rule it
"recognises" a page as a line naming the file and the page size, which tests
can check; with a matching `answers` entry it returns that known text (with
boxes and words, or without boxes as a VLM does) for every page.
"""

from __future__ import annotations

import fnmatch
import os
import random
import signal
import time
from collections.abc import Sequence

import structlog
from PIL import Image

from daemon.documents.opening import BadInputError
from daemon.protocol import Block, EngineInfo, Line, PageText, Quad, Word
from daemon.settings import FaultyModel, KnownAnswer
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    Engine,
    EngineError,
    Runtime,
)

# Messages as PyTorch words them, so daemon.worker.faults sees what it would see on a GPU.
CUDA_ASSERT_MESSAGE = (
    "CUDA error: device-side assert triggered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, "
    "so the stacktrace below might be incorrect."
)
CUDA_OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "15.59 GiB of which 1.02 GiB is free."
)
CRASH_EXIT_CODE = 70

log = structlog.get_logger("daemon.worker.faulty")


class FaultyEngine(Engine):
    def __init__(self, name: str, model: FaultyModel, runtime: Runtime) -> None:
        super().__init__(name, runtime)
        self.model = model
        seed = model.seed if model.seed is not None else random.SystemRandom().randrange(2**32)
        # The pid takes part so a fresh worker after a crash draws anew.
        self._random = random.Random(f"{seed}:{os.getpid()}")
        self._document = ""
        self._fault: str | None = None
        self._full_area: int | None = None
        self._leaked: list[bytearray] = []

    def load(self) -> EngineInfo:
        if self.model.load_seconds:
            time.sleep(self.model.load_seconds)
        if self.model.load_fault == "error":
            raise EngineError("injected load failure")
        if self.model.load_fault == "crash":
            os._exit(CRASH_EXIT_CODE)
        if self.model.load_fault == "hang":
            _hang()
        if self.model.load_fault == "cuda_fatal":
            raise RuntimeError(CUDA_ASSERT_MESSAGE)  # as from a warm-up pass at load
        return EngineInfo(
            engine="faulty",
            model=self.name,
            device="cpu",
            dtype="none",
            attention="none",
            details={"rules": len(self.model.rules)},
        )

    def begin_job(self, name: str, prompt: str | None = None) -> None:
        self._document = name
        self._fault = None
        self._full_area = None
        for rule in self.model.rules:
            if fnmatch.fnmatch(name, rule.match) and self._random.random() < rule.probability:
                self._fault = rule.fault
                # Drills (and bench/chaos.py) measure recovery from this line.
                log.warning("fault.injected", fault=rule.fault, document=name)
                break

    def recognize(self, pages: Sequence[Image.Image]) -> list[PageText]:
        self._inject(pages)
        if self.model.page_seconds:
            time.sleep(self.model.page_seconds * len(pages))
        answer = next(
            (a for a in self.model.answers if fnmatch.fnmatch(self._document, a.match)), None
        )
        if answer is not None:
            return [known_page(answer) for _ in pages]
        texts = []
        for image in pages:
            line = f"{self._document} {image.width}x{image.height}"
            box = (
                (0.0, 0.0),
                (float(image.width), 0.0),
                (float(image.width), float(image.height)),
                (0.0, float(image.height)),
            )
            texts.append(PageText(text=line, lines=(Line(text=line, box=box, confidence=1.0),)))
        return texts

    def _inject(self, pages: Sequence[Image.Image]) -> None:
        fault = self._fault
        if fault is None:
            return
        if fault == "crash":
            os._exit(CRASH_EXIT_CODE)
        if fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
            _hang()  # not reached: the default SIGSEGV action ends the process
        if fault == "hang":
            _hang()
        if fault == "stuck":
            # Hung where SIGTERM does not help (as in a driver call that never
            # returns): only the SIGKILL after stop_grace_seconds ends it.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _hang()
        if fault == "leak":
            block = bytearray(self.model.leak_megabytes * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
            self._leaked.append(block)
            return
        if fault == "oom":
            raise RuntimeError(CUDA_OOM_MESSAGE)
        if fault == "oom_transient":
            # Out of memory at full size only: the worker's smaller retry fits.
            area = max(image.width * image.height for image in pages)
            if self._full_area is None:
                self._full_area = area
            if area >= self._full_area:
                raise RuntimeError(CUDA_OOM_MESSAGE)
            return
        if fault == "oom_real":
            area = max(image.width * image.height for image in pages)
            if self._full_area is None:
                self._full_area = area
            _gpu_allocation(too_big=area >= self._full_area)
            return
        if fault == "cuda_fatal":
            raise RuntimeError(CUDA_ASSERT_MESSAGE)
        if fault == "cuda_assert_real":
            _device_side_assert()
        if fault == "empty":
            raise EmptyOutputError("the model produced no text (injected)")
        if fault == "degenerate":
            raise DegenerateOutputError(
                "the output repeated one phrase to the token limit (injected)"
            )
        if fault == "error":
            raise EngineError("injected engine error")
        if fault == "bad_input":
            raise BadInputError("corrupt", "injected: the document is corrupt")
        raise EngineError(f"unknown injected fault {fault!r}")


def _quad(box: tuple[float, float, float, float]) -> Quad:
    x0, y0, x1, y1 = box
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def known_page(answer: KnownAnswer) -> PageText:
    """The page an answer describes, as an engine would return it."""
    lines = tuple(
        Line(
            text=line.text,
            box=_quad(line.box) if line.box is not None else None,
            confidence=1.0,
            words=tuple(Word(w.text, _quad(w.box), 1.0) for w in line.words),
        )
        for line in answer.lines
    )
    blocks = tuple(Block(b.category, b.text, b.box) for b in answer.blocks)
    text = answer.text
    if text is None:
        text = "\n".join(line.text for line in answer.lines) or "\n\n".join(
            block.text for block in answer.blocks
        )
    return PageText(text=text, lines=lines, blocks=blocks)


def _device_side_assert() -> None:
    """Index past the end of a table on the GPU, as a VLM does with a token id beyond its vocabulary.

    The bounds check is a device-side assert in the index kernel: it poisons
    this process's CUDA context, and torch raises at the next synchronisation.
    torch is imported only here, so the rest of the engine stays light.
    """
    import torch

    if not torch.cuda.is_available():
        raise EngineError("the cuda_assert_real fault needs a CUDA device")
    table = torch.zeros(4, 8, device="cuda")
    index = torch.tensor([4], device="cuda")  # one past the end
    torch.nn.functional.embedding(index, table)
    torch.cuda.synchronize()  # kernels run asynchronously: the assert surfaces here
    raise EngineError("the out-of-range index did not trigger a device-side assert")


def _gpu_allocation(too_big: bool) -> None:
    """At full size, ask the GPU for twice its memory: a real torch.OutOfMemoryError.

    Once the worker has shrunk the page, allocate and sum a small tensor
    instead: proof that the CUDA context survived the out-of-memory error in
    this same process (it is the one CUDA error that leaves it usable).
    """
    import torch

    if not torch.cuda.is_available():
        raise EngineError("the oom_real fault needs a CUDA device")
    if too_big:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.empty(2 * total, dtype=torch.uint8, device="cuda")
        raise EngineError("allocating twice the GPU's memory did not fail")
    small = torch.ones(1 << 20, device="cuda")
    if int(small.sum().item()) != 1 << 20:
        raise EngineError("the GPU computed a wrong sum after the out-of-memory error")


def _hang() -> None:
    while True:
        time.sleep(3600)
