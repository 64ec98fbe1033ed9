"""The base install: `pip install .` in a fresh virtual environment, without torch, reads a page.

The environment is built once for this module from a copy of the package
sources (scripts/package_source.py), with the machine's pip configuration and
cache, the way a user's `pip install ocr-inbox` would build it: it needs the
package index. It has no access to the test suite's .venv, so anything the
daemon imported from the `vlm` extra would fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import pages
from scripts import package_source

pytestmark = pytest.mark.slow

# What the base install must not contain: the vlm extra and the CUDA stack under it.
HEAVY = ("torch", "torchvision", "transformers", "accelerate", "tokenizers", "triton")
HEAVY_PREFIXES = ("nvidia-", "cuda-")
SIZE_LIMIT_BYTES = 2**30  # issue 13: a base environment under 1 GB


def _clean_env() -> dict[str, str]:
    """The caller's environment less what would let the venv see the suite's packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCR_INBOX_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with `pip install <copy of the package>` and nothing else."""
    root = tmp_path_factory.mktemp("base-install")
    source = package_source.stage(root / "source")
    venv = root / "venv"
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    print(f"\nbase install: {time.monotonic() - began:.1f} s")
    yield venv


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def test_base_install_has_no_torch_and_no_cuda_libraries(base_venv: Path) -> None:
    """No torch importable, none of the vlm extra or CUDA wheels installed, under 1 GB in all."""
    python = str(base_venv / "bin" / "python")
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    names = {item["name"].lower().replace("_", "-") for item in json.loads(listed.stdout)}
    assert {"ocr-inbox", "rapidocr", "onnxruntime"} <= names
    assert not names & set(HEAVY)
    assert not [name for name in names if name.startswith(HEAVY_PREFIXES)]
    probe = subprocess.run(
        [python, "-c", "import torch"], env=_clean_env(), capture_output=True, text=True
    )
    assert probe.returncode != 0
    assert "ModuleNotFoundError: No module named 'torch'" in probe.stderr
    size = _tree_bytes(base_venv)
    print(f"\nbase environment: {size / 2**20:.0f} MiB")
    assert size < SIZE_LIMIT_BYTES


def test_base_install_reads_a_page_with_once(base_venv: Path, tmp_path: Path) -> None:
    """`ocr-inbox once` of the base install reads a page's words with the embedded engine."""
    page = pages.save_png(pages.render_page(), tmp_path / "letter.png")
    result = subprocess.run(
        [str(base_venv / "bin" / "ocr-inbox"), "once", str(page)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = Path(f"{page}.ocr.md").read_text(encoding="utf-8")
    assert pages.recall(pages.SAMPLE_LINES, text) >= 0.9, text
    document = json.loads(Path(f"{page}.ocr.json").read_text(encoding="utf-8"))
    assert document["model"]["engine"] == "rapid"


def test_base_install_refuses_a_vlm_chain_and_doctor_says_why(
    base_venv: Path, tmp_path: Path
) -> None:
    """Without the vlm extra, `once --model` exits 2 naming it, and `doctor` says how to add it."""
    page = pages.save_png(pages.render_page(("x",), width=120, height=60), tmp_path / "p.png")
    cli = str(base_venv / "bin" / "ocr-inbox")
    refused = subprocess.run(
        [cli, "once", "--model", "Qwen/Qwen2-VL-2B-Instruct", str(page)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    record = json.loads(refused.stdout.strip().splitlines()[-1])
    assert "needs the 'vlm' extra" in record["message"]
    assert "pip install 'ocr-inbox[vlm]'" in record["message"]
    config = tmp_path / "s.toml"
    config.write_text(
        '[worker]\nchain = ["rapid", "q"]\n[models.q]\nengine = "hf_vlm"\npath = "/m"\n'
    )
    doctor = subprocess.run(
        [cli, "doctor", "--config", str(config)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stdout[-3000:] + doctor.stderr[-3000:]
    assert "Extra 'vlm': NOT INSTALLED (missing torch, torchvision, transformers, accelerate)" in (
        doctor.stdout
    )
    assert "add it: pip install 'ocr-inbox[vlm]'" in doctor.stdout
    assert "OK: the first model of the chain, 'rapid', loads here." in doctor.stdout
