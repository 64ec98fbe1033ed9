"""Find a model on this machine: a local folder, or a hub id already in the HF cache.

Nothing is downloaded unless the settings allow it (`worker.allow_download`).
Models are always loaded from a local folder with `local_files_only=True`,
so transformers never reaches for the network behind our back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.worker.engines.base import ModelNotFoundError

# What a transformers model needs; repos often also carry .bin/.pth/.onnx/.gguf
# copies of the weights that would multiply the download.
FETCHED_FILES = [
    "*.json",
    "*.safetensors",
    "*.py",
    "*.jinja",
    "*.txt",
    "*.model",
    "*.tiktoken",
]

# owner/name as the hub spells it; a string that names an existing folder wins.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class ModelLocation:
    source: str  # as configured: a folder or a hub id
    directory: Path  # the local folder holding config.json
    hub_id: str | None = None
    downloaded: bool = False  # fetched just now (allow_download)


def fetch_command(hub_id: str, revision: str | None) -> str:
    command = f"hf download {hub_id}"
    return f"{command} --revision {revision}" if revision else command


def is_hub_id(source: str) -> bool:
    return bool(HUB_ID.fullmatch(source)) and not source.startswith(".")


def locate_model(
    name: str, source: str, *, revision: str | None = None, allow_download: bool = False
) -> ModelLocation:
    """Where model `name` (configured as `source`) lives on disk.

    Raises ModelNotFoundError, whose message says how to get the model."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"model {name!r}: {folder} has no config.json; "
                "point `path` at a Hugging Face model folder"
            )
        return ModelLocation(source=source, directory=folder.resolve())
    if not is_hub_id(source):
        raise ModelNotFoundError(f"model {name!r}: no model folder at {folder}")
    return _locate_in_cache(name, source, revision=revision, allow_download=allow_download)


def _locate_in_cache(
    name: str, hub_id: str, *, revision: str | None, allow_download: bool
) -> ModelLocation:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        directory = snapshot_download(hub_id, revision=revision, local_files_only=True)
        return ModelLocation(source=hub_id, directory=Path(directory), hub_id=hub_id)
    except LocalEntryNotFoundError:
        pass
    if not allow_download:
        raise ModelNotFoundError(
            f"model {name!r}: {hub_id} is not a local folder and is not in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}), and downloads are off. "
            f"Fetch it with: {fetch_command(hub_id, revision)}  "
            "(or set worker.allow_download = true)"
        )
    try:
        directory = snapshot_download(hub_id, revision=revision, allow_patterns=FETCHED_FILES)
    except Exception as error:  # network, auth, missing repo: all mean "not here"
        raise ModelNotFoundError(
            f"model {name!r}: downloading {hub_id} failed: {error}. "
            f"Fetch it by hand with: {fetch_command(hub_id, revision)}"
        ) from error
    return ModelLocation(source=hub_id, directory=Path(directory), hub_id=hub_id, downloaded=True)


def read_model_config(directory: Path) -> dict[str, Any]:
    """The model's config.json as a dict."""
    path = directory / "config.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelNotFoundError(f"{path}: cannot read the model config: {error}") from error
    if not isinstance(loaded, dict):
        raise ModelNotFoundError(f"{path}: not a model config (expected a JSON object)")
    return loaded
