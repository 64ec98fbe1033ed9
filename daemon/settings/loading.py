"""The whole settings object and how it is read: one TOML file, overridable by
OCR_INBOX_<SECTION>__<KEY> environment variables and command-line options."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from daemon.settings import origins
from daemon.settings.inboxes import InboxProfile, InboxTable, absolute, check_profiles
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
    inbox_name,
    inbox_root,
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
    inboxes: dict[str, InboxTable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _chain_names_known(self) -> Settings:
        known = set(self.models) | set(BUILTIN_MODELS)
        chains = [("worker.chain", self.worker.chain)]
        chains += [
            (f"inboxes.{name}.chain", table.chain)
            for name, table in self.inboxes.items()
            if table.chain is not None
        ]
        for where, chain in chains:
            for index, name in enumerate(chain):
                if name not in known:
                    raise ValueError(
                        f"{where}[{index}]: unknown model {name!r}; "
                        f"define it as [models.{name}] or use one of {sorted(known)}"
                    )
        return self

    @model_validator(mode="after")
    def _inboxes_apart(self) -> Settings:
        profiles = self._resolve_profiles()
        names = [profile.name for profile in profiles]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(
                    f"inboxes: two inboxes are named {name!r} (a [watch] inboxes folder goes by"
                    " its last path component, a table by its own name); rename one"
                )
        check_profiles(profiles)
        return self

    def profiles(self) -> dict[Path, InboxProfile]:
        """Every inbox the daemon watches, by its root: the `[watch] inboxes` list (when
        set, or when there are no tables) and the `[inboxes.NAME]` tables."""
        return {profile.root: profile for profile in self._resolve_profiles()}

    def profile_named(self, name: str) -> InboxProfile | None:
        return next((p for p in self._resolve_profiles() if p.name == name), None)

    def _resolve_profiles(self) -> list[InboxProfile]:
        watch, chain, formats = self.watch, tuple(self.worker.chain), tuple(self.outputs.formats)
        listed: list[InboxProfile] = []
        if "inboxes" in watch.model_fields_set or not self.inboxes:
            # One folder listed twice is one inbox.
            roots = {inbox_root(path): inbox_name(path) for path in watch.inboxes}
            listed = [
                InboxProfile(
                    name=name,
                    root=root,
                    chain=chain,
                    formats=formats,
                    recursive=watch.recursive,
                    mode=watch.mode,
                    settle_seconds=watch.settle_seconds,
                )
                for root, name in roots.items()
            ]
        for name, table in self.inboxes.items():
            listed.append(
                InboxProfile(
                    name=name,
                    root=inbox_root(table.path),
                    chain=tuple(table.chain) if table.chain is not None else chain,
                    formats=tuple(table.formats) if table.formats is not None else formats,
                    recursive=watch.recursive if table.recursive is None else table.recursive,
                    mode=table.mode or watch.mode,
                    settle_seconds=watch.settle_seconds
                    if table.settle_seconds is None
                    else table.settle_seconds,
                    output_dir=absolute(table.output_dir),
                    archive_dir=absolute(table.archive_dir),
                    failed_dir=absolute(table.failed_dir),
                    delete_after_success=table.delete_after_success,
                    prompt=table.prompt,
                    webhook_url=table.webhook_url,
                    from_table=True,
                )
            )
        return listed

    def chains(self) -> list[tuple[str, ...]]:
        """The distinct chains the inboxes use, in the order the inboxes come."""
        seen: list[tuple[str, ...]] = []
        for profile in self._resolve_profiles():
            if profile.chain not in seen:
                seen.append(profile.chain)
        return seen

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
    """The settings cannot be used; the message names the key, its value and where it came from."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        # One entry per problem (key, problem, value, source), for a JSON log record.
        self.problems = problems or []


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


@dataclass(frozen=True, slots=True)
class _Sources:
    """What the settings were built from, to say where a bad value came from."""

    overrides: Mapping[str, Any]
    environ: Mapping[str, str]
    file: Path | None
    file_data: Mapping[str, Any]

    def origin(self, key: tuple[str, ...]) -> origins.Origin:
        return origins.find_origin(
            key,
            overrides=self.overrides,
            environ=self.environ,
            file=self.file,
            file_data=self.file_data,
        )


def _shown(value: Any) -> bool:
    """A value worth quoting: not a whole table, not pydantic's placeholder for "absent"."""
    return not isinstance(value, dict) and type(value).__name__ != "PydanticUndefinedType"


def _describe(error: ValidationError, sources: _Sources) -> SettingsError:
    problems: list[dict[str, Any]] = []
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if part not in ("function-after",))
        message = origins.redact_text(item["msg"])
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        key = origins.key_of(item["loc"])
        origin = sources.origin(key)
        problem: dict[str, Any] = {
            "key": location or "(top level)",
            "problem": message,
            "source": origin.describe(),
        }
        lines.append(f"{problem['key']}: {message}")
        where = f"from {origin.describe()}"
        if "input" in item and _shown(item["input"]) and origin.kind != "default":
            problem["value"] = origins.redact(key, item["input"])
            where = f"value {problem['value']!r}, {where}"
        if key:
            lines.append(f"    {where}")
        problems.append(problem)
    return SettingsError("invalid settings:\n  " + "\n  ".join(lines), problems)


def _describe_parse_error(error: ValueError, sources: _Sources) -> SettingsError:
    """pydantic-settings' own error for an environment value it cannot decode (not JSON)."""
    text = origins.redact_text(str(error))
    named = re.search(r'field "(\w+)"', text)
    variables = [
        name
        for name in sources.environ
        if named and name.upper().startswith(origins.ENV_PREFIX + named.group(1).upper())
    ]
    shown = ", ".join(
        f"{name}={origins.redact(origins.key_of(name.split('__')), sources.environ[name])!r}"
        for name in sorted(variables)
    )
    hint = (
        f"\n    from the environment: {shown} (a list or table is written as JSON,"
        " e.g. OCR_INBOX_WORKER__CHAIN='[\"rapid\"]')"
        if shown
        else ""
    )
    problem = {"key": named.group(1) if named else "(top level)", "problem": text}
    if shown:
        problem["source"] = f"the environment: {shown}"
    return SettingsError(f"invalid settings: {text}{hint}", [problem])


def load_settings(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Settings, Path | None]:
    """Read the file, then the environment, then command-line overrides (highest).

    Returns the settings and the file they came from (None when only defaults
    and the environment were used). Raises SettingsError with every problem named.
    """
    chosen = config_path(path)
    # Read here too for a clear error on a missing or malformed file, and to
    # say which of its keys gave a bad value.
    file_data = read_toml(chosen) if chosen is not None else {}
    sources = _Sources(overrides or {}, dict(os.environ), chosen, file_data)
    Settings.toml_path = chosen
    try:
        settings = Settings(**(overrides or {}))
    except ValidationError as error:
        raise _describe(error, sources) from error
    except ValueError as error:  # pydantic-settings' own parse errors (bad env JSON)
        raise _describe_parse_error(error, sources) from error
    finally:
        Settings.toml_path = None
    return settings, chosen


def describe_origin(
    key: tuple[str, ...], file: Path | None, overrides: dict[str, Any] | None = None
) -> str:
    """Where the value of `key` in settings loaded from `file` and `overrides` came from."""
    file_data: Mapping[str, Any] = {}
    if file is not None:
        try:
            file_data = read_toml(file)
        except SettingsError:
            file_data = {}
    return _Sources(overrides or {}, dict(os.environ), file, file_data).origin(key).describe()
