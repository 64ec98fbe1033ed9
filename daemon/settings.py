"""Settings: one TOML file, overridable by OCR_INBOX_<SECTION>__<KEY> environment variables.

The models here are cheap to pickle: the supervisor hands them to spawned
workers, which import the heavy libraries themselves.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "OCR_INBOX_CONFIG"
DEFAULT_CONFIG = Path("settings.toml")


class Section(BaseModel):
    """A settings table: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def inbox_root(path: Path) -> Path:
    """An inbox as the daemon holds it: absolute, symlinks kept (a share mounted
    through a link keeps the name it was configured with)."""
    return Path(os.path.abspath(path))


def inbox_name(path: Path) -> str:
    """The name an inbox of the `[watch] inboxes` list goes by: its folder's last
    path component ("/" for the root). The journal knows a file by this name and
    its path relative to the inbox, so hosts that mount one share at different
    places agree on it."""
    return inbox_root(path).name or "/"


class WatchSettings(Section):
    inboxes: list[Path] = Field(default_factory=lambda: [Path("./inbox")], min_length=1)
    recursive: bool = False
    mode: Literal["native", "polling"] = "native"
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    settle_seconds: float = Field(default=2.0, ge=0)
    rescan_interval_seconds: float = Field(default=300.0, gt=0)
    create_missing: bool = True

    @model_validator(mode="after")
    def _inbox_names_distinct(self) -> WatchSettings:
        roots: dict[str, Path] = {}
        for path in self.inboxes:
            name, root = inbox_name(path), inbox_root(path)
            other = roots.setdefault(name, root)
            if other != root:
                raise ValueError(
                    f"inboxes: {other} and {root} would both be named {name!r} (an inbox is"
                    " named after its folder's last component, and the journal knows each"
                    " file by that name); rename or move one of the folders"
                )
        return self

    def named_inboxes(self) -> dict[str, Path]:
        """Each inbox's name and root (see inbox_name)."""
        return {inbox_name(path): inbox_root(path) for path in self.inboxes}


class StateSettings(Section):
    dir: Path = Path("./.state")


class LimitsSettings(Section):
    max_file_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_pages: int = Field(default=500, gt=0)
    max_page_pixels: int = Field(default=40_000_000, gt=0)
    hard_max_page_pixels: int = Field(default=178_956_970, gt=0)
    pdf_dpi: int = Field(default=200, ge=36, le=1200)
    page_deadline_seconds: float = Field(default=300.0, gt=0)
    load_deadline_seconds: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> LimitsSettings:
        if self.max_page_pixels > self.hard_max_page_pixels:
            raise ValueError("max_page_pixels must not exceed hard_max_page_pixels")
        return self


class WorkerSettings(Section):
    chain: list[str] = Field(default_factory=lambda: ["rapid"], min_length=1)
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    count: int = Field(default=1, ge=1, le=16)
    threads: int = Field(default=0, ge=0)
    allow_download: bool = False


class RecoverySettings(Section):
    max_fatal_failures: int = Field(default=3, ge=1)
    failure_window_seconds: float = Field(default=600.0, gt=0)
    cooldown_seconds: float = Field(default=600.0, ge=0)
    attempts_per_model: int = Field(default=2, ge=1)
    oom_retries: int = Field(default=2, ge=0)
    oom_scale: float = Field(default=0.7, gt=0, lt=1)
    backoff_cap_seconds: float = Field(default=30.0, ge=0)
    stop_grace_seconds: float = Field(default=10.0, gt=0)
    idle_fallback_seconds: float = Field(default=120.0, gt=0)
    max_worker_rss_megabytes: int = Field(default=0, ge=0)


OutputFormat = Literal["md", "json", "txt", "hocr", "pdf"]


def _default_formats() -> list[OutputFormat]:
    return ["md", "json"]


class OutputSettings(Section):
    # What is written for each input: NAME.ocr.<format>. The JSON is the
    # daemon's record of a finished file (it lists the set and proves it ours),
    # so it is always part of the set.
    formats: list[OutputFormat] = Field(default_factory=_default_formats, min_length=1)
    # A PDF page that already has a text layer keeps it alone unless this is on.
    pdf_text_over_existing_text: bool = False
    json_indent: int | None = 2
    retry_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _json_is_the_record(self) -> OutputSettings:
        if "json" not in self.formats:
            raise ValueError(
                'formats must include "json": the .ocr.json is the daemon\'s record that a'
                " file is done and which outputs are its own"
            )
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("formats lists a format twice")
        return self


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


# --- models -----------------------------------------------------------------


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


class Settings(BaseSettings):
    """Everything the daemon reads at start (and again on SIGHUP)."""

    model_config = SettingsConfigDict(
        env_prefix="OCR_INBOX_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # The TOML file to read, chosen at run time by load_settings(); a class
    # variable because pydantic-settings builds its sources per class.
    toml_path: ClassVar[Path | None] = None

    watch: WatchSettings = WatchSettings()
    state: StateSettings = StateSettings()
    limits: LimitsSettings = LimitsSettings()
    worker: WorkerSettings = WorkerSettings()
    recovery: RecoverySettings = RecoverySettings()
    outputs: OutputSettings = OutputSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _chain_names_known(self) -> Settings:
        known = set(self.models) | set(BUILTIN_MODELS)
        for index, name in enumerate(self.worker.chain):
            if name not in known:
                raise ValueError(
                    f"worker.chain[{index}]: unknown model {name!r}; "
                    f"define it as [models.{name}] or use one of {sorted(known)}"
                )
        return self

    def model(self, name: str) -> RapidModel | HfVlmModel | FaultyModel:
        """The settings of a named model, built-ins included."""
        if name in self.models:
            return self.models[name]
        return BUILTIN_MODELS[name]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Command-line overrides (init) beat the environment, which beats the file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


class SettingsError(Exception):
    """The settings cannot be used; the message names the key and the problem."""


def config_path(explicit: Path | None) -> Path | None:
    """--config, else $OCR_INBOX_CONFIG, else ./settings.toml if it exists."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise SettingsError(f"{path}: settings file not found") from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from error
    except OSError as error:
        raise SettingsError(f"{path}: cannot read: {error.strerror}") from error


def _describe(error: ValidationError, origin: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if part not in ("function-after",))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{location or '(top level)'}: {message}")
    return f"{origin}: invalid settings:\n  " + "\n  ".join(problems)


def load_settings(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Settings, Path | None]:
    """Read the file, then the environment, then command-line overrides (highest).

    Returns the settings and the file they came from (None when only defaults
    and the environment were used). Raises SettingsError with every problem named.
    """
    chosen = config_path(path)
    if chosen is not None:
        read_toml(chosen)  # a clear error for a missing or malformed file
    origin = str(chosen) if chosen is not None else "settings"
    Settings.toml_path = chosen
    try:
        settings = Settings(**(overrides or {}))
    except ValidationError as error:
        raise SettingsError(_describe(error, origin)) from error
    except ValueError as error:  # pydantic-settings' own parse errors (bad env JSON)
        raise SettingsError(f"{origin}: invalid settings: {error}") from error
    finally:
        Settings.toml_path = None
    return settings, chosen
