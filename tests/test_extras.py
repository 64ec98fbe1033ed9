"""A chain that needs an install extra that is missing stops at start (exit 2) and says which.

"Missing" is made real in a fresh interpreter: sys.modules["torch"] = None is
Python's own import blocker, so `import torch` fails there exactly as on a
base install (tests/packaging/test_base_install.py checks the real thing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.extras import install_hint, missing_extras, missing_modules
from daemon.settings import Settings
from harness import pages
from harness.driver import daemon_env

BLOCK_TORCH = 'import sys; sys.modules["torch"] = None\n'


def _without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        cwd=cwd,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_extras_names_each_vlm_model_of_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch blocked, every hf_vlm model of the chain is listed with the vlm extra; rapid never."""
    settings = Settings(
        worker={"chain": ["rapid", "qwen"]}, models={"qwen": {"engine": "hf_vlm", "path": "/m"}}
    )
    assert missing_extras(settings) == []  # the suite's environment has the extra
    monkeypatch.setitem(sys.modules, "torch", None)
    assert missing_modules("vlm") == ("torch",)
    [missing] = missing_extras(settings)
    assert (missing.position, missing.model, missing.extra) == (1, "qwen", "vlm")
    assert install_hint("vlm") in missing.message()


def test_an_inbox_tables_chain_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VLM only an [inboxes.NAME] chain names is refused too, under that table's key."""
    settings = Settings(
        models={"qwen": {"engine": "hf_vlm", "path": "/m"}},
        inboxes={"photos": {"path": tmp_path / "photos", "chain": ["qwen", "rapid"]}},
    )
    monkeypatch.setitem(sys.modules, "torch", None)
    [missing] = missing_extras(settings)
    assert (missing.key, missing.model) == ("inboxes.photos.chain[0]", "qwen")
    assert missing.message().endswith("or take the model out of inboxes.photos.chain")


def test_a_vlm_chain_without_the_extra_exits_2_before_any_worker(tmp_path: Path) -> None:
    """`once --model` without torch: exit 2, one JSON record naming the extra, no output, no torch."""
    page = pages.save_png(pages.render_page(("x",), width=120, height=60), tmp_path / "p.png")
    result = _without_torch(
        f"""
        from daemon.cli import main
        code = main(["once", "--model", "/models/Qwen2-VL-2B-Instruct", {str(page)!r}])
        # the supervisor (imported lazily by `once`) was never built
        print("EXIT", code, "supervisor" if "daemon.supervising.arbiter" in sys.modules else "")
        """,
        tmp_path,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[-1].strip() == "EXIT 2", result.stdout + result.stderr
    record = json.loads(lines[-2])
    assert record["event"] == "settings.invalid" and record["level"] == "error"
    assert "model 'Qwen2-VL-2B-Instruct' (engine hf_vlm) needs the 'vlm' extra" in record["message"]
    assert "pip install 'ocr-inbox[vlm]'" in record["message"]
    assert record["problems"][0]["key"] == "worker.chain[0]"
    assert not list(tmp_path.glob("p.png.ocr.*"))


def test_doctor_without_torch_says_what_is_missing_and_how_to_add_it(tmp_path: Path) -> None:
    """doctor runs without torch: rapid loads (exit 0), the VLM's error and the report name the extra."""
    config = tmp_path / "s.toml"
    config.write_text(
        '[worker]\nchain = ["rapid", "qwen"]\n[models.qwen]\nengine = "hf_vlm"\npath = "/m"\n'
    )
    result = _without_torch(
        f"""
        from daemon.cli import main
        print("EXIT", main(["doctor", "--json", "--config", {str(config)!r}]))
        """,
        tmp_path,
    )
    body, _, last = result.stdout.rpartition("EXIT")
    assert last.strip() == "0", result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(body)
    vlm = report["extras"]["vlm"]
    assert (vlm["installed"], vlm["missing"], vlm["needed_by"]) == (False, ["torch"], ["qwen"])
    assert vlm["install"] == install_hint("vlm")
    assert report["gpus"] == [] and "the vlm extra" in report["cuda"]["reason"]
    rapid, qwen = report["models"]
    assert rapid["loads"] is True
    assert qwen["loads"] is False and "pip install 'ocr-inbox[vlm]'" in qwen["error"]
    text = _without_torch(
        f"""
        from daemon.cli import main
        main(["doctor", "--config", {str(config)!r}])
        """,
        tmp_path,
    )
    assert "Extra 'vlm': NOT INSTALLED (missing torch); needed by 'qwen'" in text.stdout
    assert "add it: pip install 'ocr-inbox[vlm]'" in text.stdout
