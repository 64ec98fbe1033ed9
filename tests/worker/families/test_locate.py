"""Finding a model: a local folder, or a hub id already in the Hugging Face cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daemon.worker.engines.base import ModelNotFoundError
from daemon.worker.families.locate import is_hub_id, locate_model, read_model_config
from harness.tiny_models import tiny_model


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def fill_cache(cache: Path, hub_id: str, model: Path) -> Path:
    """Lay a model folder out as huggingface_hub caches a downloaded snapshot."""
    owner, name = hub_id.split("/")
    repo = cache / f"models--{owner}--{name}"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    shutil.copytree(model, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_local_folder_is_found_as_is(tiny_models_root: Path) -> None:
    """A folder with config.json is used directly; no hub id is involved."""
    folder = tiny_model("qwen2_vl", tiny_models_root)
    location = locate_model("m", str(folder))
    assert location.directory == folder.resolve()
    assert location.hub_id is None
    assert read_model_config(location.directory)["model_type"] == "qwen2_vl"


def test_folder_without_config_json_is_not_a_model(tmp_path: Path) -> None:
    """An existing folder that is not a model folder is named as such."""
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        locate_model("m", str(tmp_path))


def test_relative_path_that_does_not_exist_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    """./models/x is a path, so its absence is "no model folder", not a cache miss."""
    with pytest.raises(ModelNotFoundError, match="no model folder at models/x"):
        locate_model("m", "./models/x")


def test_hub_id_found_in_the_cache(
    tiny_models_root: Path,
    empty_hub_cache: Path,
) -> None:
    """A hub id whose snapshot is in the HF cache resolves to that snapshot, offline."""
    snapshot = fill_cache(
        empty_hub_cache, "tiny-org/tiny-qwen", tiny_model("qwen2_vl", tiny_models_root)
    )
    location = locate_model("m", "tiny-org/tiny-qwen")
    assert location.directory.resolve() == snapshot.resolve()
    assert location.hub_id == "tiny-org/tiny-qwen"
    assert not location.downloaded


def test_hub_id_missing_from_the_cache_says_how_to_fetch_it(empty_hub_cache: Path) -> None:
    """Downloads off: the error names the model, the cache and the hf download command."""
    with pytest.raises(ModelNotFoundError) as caught:
        locate_model("ocr", "Qwen/Qwen2-VL-2B-Instruct")
    message = str(caught.value)
    assert "model 'ocr'" in message
    assert str(empty_hub_cache) in message
    assert "hf download Qwen/Qwen2-VL-2B-Instruct" in message


@pytest.mark.parametrize(
    ("source", "hub"),
    [
        ("Qwen/Qwen2-VL-2B-Instruct", True),
        ("rednote-hilab/dots.ocr", True),
        ("./models/qwen", False),
        ("/srv/models/qwen", False),
        ("qwen", False),
        ("a/b/c", False),
    ],
)
def test_hub_ids_look_like_owner_slash_name(source: str, hub: bool) -> None:
    """owner/name is a hub id; paths with ./, /, one part or three parts are not."""
    assert is_hub_id(source) is hub
