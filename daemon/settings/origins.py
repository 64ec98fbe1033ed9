"""Where a setting's value came from, and values shown with their secrets redacted.

A value reaches the settings from a command-line option, an OCR_INBOX_
environment variable, the TOML file or the defaults, in that order of
precedence. pydantic merges them before it validates, so a bad value's error
does not say which one gave it; this module looks the key up in each source
the way pydantic-settings reads them, so a message can name the variable a
user set rather than blame the file they did not touch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from daemon.settings.models import ModelSettings

ENV_PREFIX = "OCR_INBOX_"
ENV_DELIMITER = "__"

# The options of `ocr-inbox run/once` that become settings (daemon/cli.py _overrides).
OPTION_KEYS: dict[tuple[str, ...], str] = {
    ("watch", "inboxes"): "--inbox",
    ("state", "dir"): "--state-dir",
    ("metrics", "port"): "--metrics-port",
    ("worker", "chain"): "--model",
    ("models",): "--model",
}

# pydantic puts a model table's engine (its discriminator) into an error's
# location: models.q.hf_vlm.path is the key models.q.path.
ENGINE_TAGS = frozenset(
    str(table.model_fields["engine"].default) for table in get_args(get_args(ModelSettings)[0])
)

REDACTED = "<redacted>"
# Keys whose whole value is a secret; and a password inside a URL
# (postgresql://user:secret@host/db).
SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Origin:
    """One source of a value: an option, an environment variable, the file, or the defaults."""

    kind: str  # "option" | "environment" | "file" | "default"
    name: str = ""  # the option, the variable or the file
    key: str = ""  # for a file: the key inside it, "[section] key"

    def describe(self) -> str:
        if self.kind == "option":
            return f"the option {self.name}"
        if self.kind == "environment":
            return f"the environment variable {self.name}"
        if self.kind == "file":
            return f"{self.name}, {self.key}" if self.key else self.name
        return "the defaults"


def key_of(location: Sequence[Any]) -> tuple[str, ...]:
    """The settings key of a pydantic error location: names only, engine tags dropped."""
    key: list[str] = []
    for index, part in enumerate(location):
        if not isinstance(part, str) or part.startswith("function-"):
            break
        if index == 2 and key[:1] == ["models"] and part in ENGINE_TAGS:
            continue
        key.append(part)
    return tuple(key)


def toml_key(key: Sequence[str]) -> str:
    """How a key is written in the TOML file: [limits] max_pages, [models.q] path."""
    if len(key) < 2:
        return f"[{key[0]}]" if key else ""
    return f"[{'.'.join(key[:-1])}] {key[-1]}"


def _nested(data: Any, key: Sequence[str]) -> tuple[bool, Any]:
    for part in key:
        if not isinstance(data, Mapping) or part not in data:
            return False, None
        data = data[part]
    return True, data


def find_origin(
    key: Sequence[str],
    *,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    file: Path | None,
    file_data: Mapping[str, Any],
) -> Origin:
    """The highest-precedence source that sets `key` (or a table above it)."""
    for prefix in (tuple(key[:length]) for length in range(len(key), 0, -1)):
        if _nested(overrides, prefix)[0]:
            return Origin("option", _option_for(key))
    names = {name.upper(): name for name in environ}
    for length in range(len(key), 0, -1):
        wanted = ENV_PREFIX + ENV_DELIMITER.join(key[:length]).upper()
        if wanted in names:
            return Origin("environment", names[wanted])
    if file is not None:
        for length in range(len(key), 0, -1):
            if _nested(file_data, key[:length])[0]:
                return Origin("file", str(file), toml_key(key[:length]))
    return Origin("default")


def _option_for(key: Sequence[str]) -> str:
    for length in range(len(key), 0, -1):
        option = OPTION_KEYS.get(tuple(key[:length]))
        if option is not None:
            return option
    for option_key, option in OPTION_KEYS.items():
        if option_key[: len(key)] == tuple(key):
            return option
    return "on the command line"


def redact(key: Sequence[str], value: Any) -> Any:
    """`value` safe to print: a secret key's value hidden, passwords in URLs hidden."""
    if any(SECRET_KEY.search(part) for part in key):
        return REDACTED
    if isinstance(value, str):
        return URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", value)
    if isinstance(value, Mapping):
        return {name: redact((*key, str(name)), item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(key, item) for item in value]
    return value


def redact_text(text: str) -> str:
    """Passwords in any URLs within a message (an error may quote a value)."""
    return URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
