"""What travels to the GPU machine is derived from pyproject.toml: what the image lacks or has too old.

The resolution test asks the package index for metadata (no wheels): pip
resolves our requirements and the image's for CPython 3.12 on manylinux, as
`make gpu-wheelhouse` does. Downloading the travelling wheels themselves
(about 25 MB) is left to `make gpu-wheelhouse`; the GPU check's test builds a
wheelhouse of ocr-inbox's own wheel and pip's (tests/scripts/test_gpu_check.py).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.driver import REPO
from scripts import gpu_wheelhouse
from scripts.gpu_wheelhouse import Pinned, Travelling

PYPROJECT = REPO / "pyproject.toml"
# What the image has in any version that our pins accept (issue 19): never travels.
IMAGE_NEVER_TRAVELS = ("torch", "torchvision", "accelerate", "onnxruntime", "pillow", "numpy")


def test_our_requirements_are_the_base_and_the_vlm_and_test_extras() -> None:
    """The base dependencies and the vlm and test extras, without the linters, ourselves or rapidocr."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    expected = [
        requirement
        for requirement in [*project["dependencies"], *extras["vlm"], *extras["test"]]
        if not requirement.startswith("rapidocr")
    ]
    found = gpu_wheelhouse.our_requirements(PYPROJECT)
    assert sorted(found) == sorted(dict.fromkeys(expected))
    names = {gpu_wheelhouse.requirement_name(requirement) for requirement in found}
    assert {"transformers", "torch", "pytest", "structlog", "nvidia-ml-py"} <= names
    assert not names & {"ocr-inbox", "mypy", "ruff", "rapidocr"}


def test_requirement_names_are_normalised() -> None:
    """Names compare as PEP 503 says: case and runs of '-', '_', '.' do not matter."""
    assert gpu_wheelhouse.requirement_name("Tomli_W>=1.1,<2") == "tomli-w"
    assert gpu_wheelhouse.requirement_name("nvidia-ml-py>=12") == "nvidia-ml-py"
    assert gpu_wheelhouse.canonical("PyYAML") == "pyyaml"
    assert gpu_wheelhouse.canonical("zope.interface") == "zope-interface"


def test_travelling_is_what_the_image_lacks_or_resolves_to_another_version() -> None:
    """Missing packages and version differences travel; identical pins stay home."""
    ours = {
        "transformers": Pinned("transformers", "5.25.0"),
        "structlog": Pinned("structlog", "26.1.0"),
        "numpy": Pinned("numpy", "2.4.6"),
    }
    image = {
        "transformers": Pinned("transformers", "5.17.0"),
        "numpy": Pinned("numpy", "2.4.6"),
        "torch": Pinned("torch", "2.11.0"),
    }
    assert gpu_wheelhouse.travelling(ours, image) == [
        Travelling(ours["structlog"], "not in the image"),
        Travelling(ours["transformers"], "the image's set has 5.17.0"),
    ]


@pytest.mark.slow
def test_the_derived_wheelhouse_for_python_312() -> None:
    """Resolved for CPython 3.12: transformers and the daemon's own packages travel; torch, CUDA and numpy do not."""
    ours = gpu_wheelhouse.resolve(gpu_wheelhouse.our_requirements(PYPROJECT))
    image = gpu_wheelhouse.resolve(gpu_wheelhouse.IMAGE_HAS)
    moving = {item.pinned.name: item for item in gpu_wheelhouse.travelling(ours, image)}
    transformers = moving["transformers"].pinned.version
    assert int(transformers.split(".")[0]) == 5 and int(transformers.split(".")[1]) >= 23
    assert moving["transformers"].reason.startswith("the image's set has 5.17")
    for name in (
        "structlog",
        "watchdog",
        "pydantic-settings",
        "pypdfium2",
        "pytest",
        "nvidia-ml-py",
    ):
        assert moving[name].reason == "not in the image", name
    assert not [name for name in moving if name in IMAGE_NEVER_TRAVELS]
    assert not [name for name in moving if name.startswith(("nvidia-cu", "nvidia-cudnn", "cuda-"))]
    assert (
        "triton" not in moving
        and "rapidocr" not in moving
        and "opencv-python-headless" not in moving
    )
    # Whatever the image's resolution lacks of our requirements travels.
    for requirement in gpu_wheelhouse.our_requirements(PYPROJECT):
        name = gpu_wheelhouse.requirement_name(requirement)
        assert name in moving or image.get(name) == ours[name], name


def test_source_digest_changes_with_the_package_sources(tmp_path: Path) -> None:
    """The digest a wheel records follows every package file, so a stale wheel is recognised."""
    from scripts import package_source

    copy = package_source.stage(tmp_path / "copy")
    before = package_source.source_digest(copy)
    assert before == package_source.source_digest(REPO)
    (copy / "daemon" / "cli.py").write_text("# changed\n", encoding="utf-8")
    assert package_source.source_digest(copy) != before
