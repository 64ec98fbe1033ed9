"""The whole settings object and how it is read: one TOML file, overridable by
OCR_INBOX_<SECTION>__<KEY> environment variables and command-line options."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from daemon.settings.models import (
    BUILTIN_MODELS,
    FaultyModel,
    HfVlmModel,
    ModelSettings,
    OpenAiModel,
    RapidModel,
)
from daemon.settings.sections import (
    LimitsSettings,
    LogSettings,
    MetricsSettings,
    OutputSettings,
    RecoverySettings,
    StateSettings,
    WatchSettings,
    WorkerSettings,
)

CONFIG_ENV = "OCR_INBOX_CONFIG"
DEFAULT_CONFIG = Path("settings.toml")


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

    def model(self, name: str) -> RapidModel | HfVlmModel | OpenAiModel | FaultyModel:
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
