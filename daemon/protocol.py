"""Messages between the supervisor and a worker: the only module both sides import.

Everything here is a small frozen dataclass that pickles cheaply over a
multiprocessing Pipe. Nothing here imports torch or an engine.

Conversation:

    supervisor                         worker (spawned)
    ----------                         ----------------
    Process(target=worker_main, args=(WorkerConfig, conn))
                                       <- Loaded | LoadFailed
    Job                       ->
                                       <- Progress (one per page or batch; resets the deadline)
                                       <- ServerRequest (remote engine: one per request)
                                       <- JobDone | JobFailed (fatal=True: the worker exits next)
    Shutdown                  ->       (the worker returns after its current jobs)

A worker whose Loaded says capacity > 1 takes that many Jobs at once (each
answered by its job_id, in any order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.settings import LimitsSettings, ModelSettings

FaultKind = Literal[
    "bad_input",  # the document cannot be read; an error sidecar, no retry
    "oom",  # out of memory after the in-worker retries at lower resolution
    "cuda_fatal",  # a sticky CUDA error: the context is poisoned, the worker exits
    "empty_output",  # the model produced no text for a page that has some
    "degenerate_output",  # the model repeated itself to the token limit
    "engine_error",  # any other exception from the engine; the worker lives on
    "load_error",  # the model could not be loaded
    "crash",  # the worker died without a word (segfault, SIGKILL, os._exit)
    "hang",  # the worker missed its deadline and was killed
    "unavailable",  # an inference server cannot serve the model now: the chain falls back
]

# Worker exit codes: they carry meaning, like gunicorn's.
EXIT_OK = 0
EXIT_CUDA_FATAL = 3
EXIT_LOAD_FAILED = 4
EXIT_PROTOCOL = 5


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a spawned worker needs; the heavy imports happen in the child."""

    worker_id: int
    model_name: str
    model: ModelSettings
    limits: LimitsSettings
    device: str = "auto"
    threads: int = 0
    allow_download: bool = False
    oom_retries: int = 2
    oom_scale: float = 0.7
    log_level: str = "info"
    log_format: str = "auto"
    # The device as the daemon's plan names it ("cuda:1"); the engine is told
    # `device`, which for a pinned worker is "cuda:0", the one GPU it sees.
    placement: str = ""
    # Set in the worker's environment first thing, before anything imports
    # torch: CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER for a pinned worker.
    environment: dict[str, str] = field(default_factory=dict)


# The variables that say which GPUs a process sees, and how they are numbered.
PINNING_VARIABLES = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


# --- supervisor -> worker -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PdfRequest:
    """How the worker builds the searchable PDF (present only when "pdf" is wanted)."""

    # Add an OCR text layer to PDF pages that already have text (off: they keep theirs).
    over_existing_text: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    path: str
    # Only the PDF needs the input itself, so only it is built in the worker;
    # the other formats are written from the result by the supervisor.
    pdf: PdfRequest | None = None
    # The inbox's own instruction for a vision-language model (its profile's
    # `prompt`); None: the model's own. Other engines ignore it.
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    reason: str = "stop"


# --- results -----------------------------------------------------------------

Point = tuple[float, float]


Quad = tuple[Point, Point, Point, Point]


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a line (one character for scripts written without spaces)."""

    text: str
    box: Quad  # clockwise from top-left, in pixels of the upright page
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """One recognised line: the quadrilateral it sits in (clockwise from top-left)."""

    text: str
    box: Quad | None = None
    confidence: float | None = None
    words: tuple[Word, ...] = ()  # in reading order, where the engine gives them


@dataclass(frozen=True, slots=True)
class Block:
    """A layout region from a model that gives structure (title, table, formula...)."""

    category: str
    text: str
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in page pixels


@dataclass(frozen=True, slots=True)
class PageText:
    """What an engine returns for one page image."""

    text: str
    lines: tuple[Line, ...] = ()
    blocks: tuple[Block, ...] = ()
    rotation: int = 0  # degrees the page was turned (clockwise) before recognition
    tokens: int | None = None  # generated tokens (VLMs)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PageResult:
    index: int  # 0-based page number in the document
    width: int  # pixels of the image given to the engine
    height: int
    text: PageText
    seconds: float
    scale: float = 1.0  # < 1 when the page was downscaled (limits or OOM retries)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What is loaded and how: reported at load and copied into every .ocr.json."""

    engine: str
    model: str
    device: str = "cpu"
    dtype: str = "float32"
    attention: str = "none"
    family: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GpuMemory:
    device: int
    allocated_bytes: int
    reserved_bytes: int
    peak_bytes: int
    nvml_used_bytes: int | None = None
    nvml_total_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SearchablePdf:
    """The finished NAME.ocr.pdf, built in the worker (it parses the input)."""

    data: bytes
    source: str  # how the pages were made: "input_pdf", "image_as_is", "image_lossless"
    # Per processed page, what its invisible text layer was placed from: "words",
    # "lines", "blocks" or "page" (text without boxes), "existing_text" (the page
    # had text and was left alone), or "none" (nothing was recognised).
    layers: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DocumentResult:
    sha256: str  # of the bytes the worker actually read
    size: int
    format: str  # png, jpeg, tiff, webp, bmp, gif, pdf
    page_count: int  # pages in the document
    pages: tuple[PageResult, ...]
    open_seconds: float
    inference_seconds: float
    engine: EngineInfo
    memory: tuple[GpuMemory, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. the page limit that cut the document short
    pdf: SearchablePdf | None = None  # when the job asked for one


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    message: str
    exception_type: str | None = None
    page: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# --- worker -> supervisor -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded:
    info: EngineInfo
    load_seconds: float
    memory: tuple[GpuMemory, ...] = ()
    # How many files the worker takes at once: 1 for a model in the worker, up
    # to max_in_flight for a server (the pages are in flight there, not here).
    capacity: int = 1
    # The PINNING_VARIABLES the worker found in its environment at load: what
    # it was given, so the supervisor labels it by the GPU it really uses.
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadFailed:
    fault: Fault


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: int
    page: int  # 0-based index of the page (or first page of the batch) starting now
    page_count: int


@dataclass(frozen=True, slots=True)
class JobDone:
    job_id: int
    result: DocumentResult


@dataclass(frozen=True, slots=True)
class JobFailed:
    job_id: int
    fault: Fault
    fatal: bool = False  # True: the worker exits right after this message
    sha256: str | None = None  # of the bytes read, when they could be read
    memory: tuple[GpuMemory, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """One request to an inference server ended (the remote engine), for the metrics."""

    # ok | unavailable | busy | refused | too_large | server_error | garbled | timeout | error
    outcome: str
    seconds: float
    status: int | None = None  # the HTTP status, when one came
    prompt_tokens: int | None = None  # from the answer's `usage`
    completion_tokens: int | None = None
    in_flight: int = 0  # requests of this worker still open after this one


ToWorker = Job | Shutdown
FromWorker = Loaded | LoadFailed | Progress | JobDone | JobFailed | ServerRequest
