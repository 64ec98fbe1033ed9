"""The `[models.NAME]` tables: one class per engine, told apart by `engine`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from daemon.settings.sections import Section


class RapidModel(Section):
    """The embedded CPU engine: RapidOCR on ONNX Runtime, models shipped in its wheel."""

    engine: Literal["rapid"] = "rapid"
    detect_orientation: bool = True
    text_score: float = Field(default=0.5, ge=0, le=1)
    # 1280 reads the benchmark pages (down to 6 pt on 300 DPI scans) as well as
    # 2000 did, about a quarter faster; 960 and below lose tiny noisy type
    # (docs/benchmarks.md, follow-through).
    det_limit_side_len: int = Field(default=1280, ge=320)
    threads: int = Field(default=0, ge=0)


class HfVlmModel(Section):
    """A vision-language OCR model run through transformers."""

    engine: Literal["hf_vlm"] = "hf_vlm"
    path: str
    family: Literal[
        "auto",
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen3_vl",
        "got_ocr2",
        "dots_ocr",
        "deepseek_ocr",
        "generic",
    ] = "auto"
    mode: str | None = None
    prompt: str | None = None
    max_new_tokens: int = Field(default=2048, gt=0)
    min_pixels: int | None = Field(default=None, gt=0)
    max_pixels: int | None = Field(default=None, gt=0)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    batch_size: int = Field(default=1, ge=1, le=64)
    trust_remote_code: bool = False
    revision: str | None = None


class FaultRule(Section):
    """One injected fault: when a file name matches, do `fault` (with a probability)."""

    match: str = "*"
    fault: Literal[
        "crash",
        "segfault",
        "hang",
        "stuck",
        "leak",
        "oom",
        "oom_transient",
        "oom_real",
        "cuda_fatal",
        "cuda_assert_real",
        "empty",
        "degenerate",
        "error",
        "bad_input",
    ]
    probability: float = Field(default=1.0, ge=0, le=1)


Rectangle = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels


class KnownWord(Section):
    text: str
    box: Rectangle


class KnownLine(Section):
    text: str
    box: Rectangle | None = None
    words: list[KnownWord] = Field(default_factory=list)


class KnownBlock(Section):
    category: str = "text"
    text: str
    box: Rectangle | None = None


class KnownAnswer(Section):
    """What the test engine "reads" on every page of a file whose name matches.

    Lines with boxes stand for an engine like the embedded one; `text` alone
    (or blocks) for a VLM that gives Markdown without positions. Tests use it
    for scripts the embedded engine cannot read (Cyrillic, CJK).
    """

    match: str = "*"
    lines: list[KnownLine] = Field(default_factory=list)
    blocks: list[KnownBlock] = Field(default_factory=list)
    text: str | None = None


class FaultyModel(Section):
    """A fault-injection engine for tests and drills; never for production inboxes."""

    engine: Literal["faulty"] = "faulty"
    rules: list[FaultRule] = Field(default_factory=list)
    answers: list[KnownAnswer] = Field(default_factory=list)
    seed: int | None = None
    load_fault: Literal["none", "error", "crash", "hang", "cuda_fatal"] = "none"
    page_seconds: float = Field(default=0.0, ge=0)
    # A slow model load (a big VLM reading its weights), for start-up and readiness tests.
    load_seconds: float = Field(default=0.0, ge=0)
    leak_megabytes: int = Field(default=64, ge=1)


ModelSettings = Annotated[RapidModel | HfVlmModel | FaultyModel, Field(discriminator="engine")]

BUILTIN_MODELS: dict[str, RapidModel] = {"rapid": RapidModel()}
