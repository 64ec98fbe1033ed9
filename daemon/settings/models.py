"""The `[models.NAME]` tables: one class per engine, told apart by `engine`."""

from __future__ import annotations

import os
from pathlib import Path
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


FamilyName = Literal[
    "auto",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "got_ocr2",
    "dots_ocr",
    "deepseek_ocr",
    "generic",
]


class HfVlmModel(Section):
    """A vision-language OCR model run through transformers."""

    engine: Literal["hf_vlm"] = "hf_vlm"
    path: str
    family: FamilyName = "auto"
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


class OpenAiModel(Section):
    """A model served by an inference server that speaks OpenAI's chat-completions API
    (vLLM, SGLang, `transformers serve`...). The worker keeps up to `max_in_flight`
    requests open against it; the API key itself never enters the settings, only
    where to read it from."""

    engine: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://")  # up to and including /v1
    model: str = Field(min_length=1)  # the served model's name
    family: FamilyName = "auto"  # auto: recognised from `model`
    mode: str | None = None
    prompt: str | None = None
    max_new_tokens: int = Field(default=2048, gt=0)
    max_in_flight: int = Field(default=16, ge=1, le=1024)
    request_timeout_seconds: float = Field(default=300.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # 429, 503, connection errors and garbled bodies are retried this many
    # times, backing off from retry_backoff_seconds (doubling), or as long as
    # the server's Retry-After says, up to retry_after_cap_seconds.
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    retry_after_cap_seconds: float = Field(default=60.0, ge=0)
    api_key_env: str | None = None  # the name of an environment variable holding the key
    api_key_file: str | None = None  # or a file holding it (a systemd credential)
    image_format: Literal["png", "jpeg", "webp"] = "png"
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    min_pixels: int | None = Field(default=None, gt=0)
    max_pixels: int | None = Field(default=None, gt=0)  # pages above it are sent smaller
    max_image_bytes: int = Field(default=20_000_000, gt=0)  # encoded; larger is bad input
    # While the chain has fallen back from this model, how often the daemon
    # asks the server (GET base_url/models) whether it serves again.
    probe_interval_seconds: float = Field(default=10.0, gt=0)

    def read_api_key(self) -> str | None:
        """The API key, read now from where the settings say (never stored in them).

        A relative api_key_file is looked up in systemd's $CREDENTIALS_DIRECTORY
        (LoadCredential=), else the working directory. Raises ValueError when
        the variable or file is named but missing.
        """
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise ValueError(f"the environment variable {self.api_key_env} is not set")
            return key
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            credentials = os.environ.get("CREDENTIALS_DIRECTORY")
            if not path.is_absolute() and credentials:
                path = Path(credentials) / path
            try:
                key = path.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(
                    f"cannot read the API key file {path}: {error.strerror}"
                ) from error
            if not key:
                raise ValueError(f"the API key file {path} is empty")
            return key
        return None


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


ModelSettings = Annotated[
    RapidModel | HfVlmModel | OpenAiModel | FaultyModel, Field(discriminator="engine")
]

BUILTIN_MODELS: dict[str, RapidModel] = {"rapid": RapidModel()}
