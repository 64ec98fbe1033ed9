"""The supervisor process: no torch in it, and `once` runs the same path as the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import pages
from harness.driver import daemon_env, outputs_of, run_cli, write_settings

FAKE = {"worker": {"chain": ["fake"]}, "models": {"fake": {"engine": "faulty"}}}


def _tiny_png(path: Path) -> Path:
    return pages.save_png(
        pages.render_page(("tiny",), width=200, height=100, font_px=20, margin=10), path
    )


def test_supervisor_never_imports_torch(tmp_path: Path) -> None:
    """A whole `once` run with the embedded engine leaves torch (and transformers) out of the supervisor."""
    source = _tiny_png(tmp_path / "page.png")
    script = textwrap.dedent(
        f"""
        import json, sys
        from daemon.cli import main
        import daemon.watching.watcher, daemon.observing.metrics_server, daemon.observing.systemd_notify, daemon.supervising.arbiter
        code = main(["once", {str(source)!r}])
        heavy = sorted(m for m in ("torch", "transformers", "torchvision", "onnxruntime") if m in sys.modules)
        print(json.dumps({{"code": code, "heavy": heavy}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stdout[-2000:]
    assert set(outputs_of(source)) == {"md", "json"}


def test_once_exit_codes(tmp_path: Path) -> None:
    """`once` exits 0 when every file succeeded and 1 when any failed, writing outputs for each."""
    config = write_settings(
        tmp_path / "s.toml",
        {
            **FAKE,
            "models": {
                "fake": {"engine": "faulty", "rules": [{"match": "bad-*", "fault": "bad_input"}]}
            },
        },
    )
    good = _tiny_png(tmp_path / "good.png")
    bad = _tiny_png(tmp_path / "bad-one.png")
    ok = run_cli("once", "--config", str(config), str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert set(outputs_of(good)) == {"md", "json"}
    mixed = run_cli("once", "--config", str(config), str(good), str(bad), cwd=tmp_path)
    assert mixed.returncode == 1
    assert set(outputs_of(bad)) == {"error"}
    missing = run_cli("once", "--config", str(config), str(tmp_path / "absent.png"), cwd=tmp_path)
    assert missing.returncode == 1


def test_once_redoes_files_that_already_have_outputs(tmp_path: Path) -> None:
    """`once` processes a file again even when its outputs exist (it is how users re-run a model)."""
    config = write_settings(tmp_path / "s.toml", FAKE)
    source = _tiny_png(tmp_path / "again.png")
    assert run_cli("once", "--config", str(config), str(source), cwd=tmp_path).returncode == 0
    second_run = run_cli("once", "--config", str(config), str(source), cwd=tmp_path)
    assert second_run.returncode == 0
    assert '"event": "file.done"' in second_run.stdout
    assert '"event": "file.skipped"' not in second_run.stdout
