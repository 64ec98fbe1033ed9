"""The command line: version, usage errors, and --model without editing settings."""

from __future__ import annotations

from pathlib import Path

from daemon import __version__
from daemon.cli import _overrides, _parser, model_name_for
from harness.driver import run_cli


def test_version(tmp_path: Path) -> None:
    """`ocr-inbox --version` prints the package version and exits 0."""
    result = run_cli("--version", cwd=tmp_path, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"ocr-inbox {__version__}"


def test_usage_error_exits_2(tmp_path: Path) -> None:
    """An unknown command is a usage error (exit 2), like a settings error."""
    result = run_cli("frobnicate", cwd=tmp_path, timeout=60)
    assert result.returncode == 2


def test_model_flag_replaces_the_chain() -> None:
    """--model PATH makes a one-model chain of an hf_vlm model with the family recognised later."""
    args = _parser().parse_args(["once", "--model", "/models/Qwen2-VL-2B-Instruct/", "a.png"])
    overrides = _overrides(args)
    assert overrides["worker"]["chain"] == ["Qwen2-VL-2B-Instruct"]
    model = overrides["models"]["Qwen2-VL-2B-Instruct"]
    assert model == {"engine": "hf_vlm", "path": "/models/Qwen2-VL-2B-Instruct/"}


def test_model_names_are_safe_settings_keys() -> None:
    """Hub ids and odd folder names become short names usable as a settings key."""
    assert model_name_for("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen2.5-VL-3B-Instruct"
    assert model_name_for("/srv/my models/got ocr") == "got-ocr"


def test_run_flags_become_overrides() -> None:
    """--inbox (repeatable), --state-dir and --metrics-port override their settings."""
    args = _parser().parse_args(
        ["run", "--inbox", "/a", "--inbox", "/b", "--state-dir", "/s", "--metrics-port", "9999"]
    )
    overrides = _overrides(args)
    assert overrides == {
        "watch": {"inboxes": ["/a", "/b"]},
        "state": {"dir": "/s"},
        "metrics": {"port": 9999},
    }
