"""pytest fixtures around tiny_models: one cache folder per test session.

tests/conftest.py makes them available to every test module,
so a test just names `tiny_models_root` as a parameter.
Builds are cached on disk, so all tests share each model.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: nothing may be fetched.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-wide folder where tiny models are built once and reused."""
    root = tmp_path_factory.getbasetemp() / "tiny-models"
    root.mkdir(exist_ok=True)
    yield root
    _remove_imported_remote_code(root)


def _remove_imported_remote_code(root: Path) -> None:
    for folder in root.glob("*_remote-*"):
        forget_imported_code(folder)


def forget_imported_code(folder: Path) -> None:
    """transformers copies a model's own code into its modules cache, in a package
    named after the model folder; remove that copy once the folder is gone."""
    try:
        from transformers.dynamic_module_utils import HF_MODULES_CACHE
    except ImportError:
        return
    modules = Path(HF_MODULES_CACHE) / "transformers_modules"
    sanitized = folder.name.replace("-", "_hyphen_").replace(".", "_dot_")
    for copied in modules.glob(f"{sanitized}*"):
        shutil.rmtree(copied, ignore_errors=True)
