"""daemon.fitting: which models are resident at once, their weights on disk, and a set refused at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from daemon import cli, fitting
from daemon.fitting import ResidentModel, fit_problem, resident_models, weight_bytes
from daemon.settings import Settings
from harness.driver import write_settings

GIB = 2**30


def _model_folder(path: Path, gib: float) -> Path:
    """A model folder whose weight file has this size (sparse: no disk is used)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    with (path / "model.safetensors").open("wb") as handle:
        handle.truncate(int(gib * GIB))
    return path


def _settings(tmp_path: Path, **worker: Any) -> dict[str, Any]:
    big, small = _model_folder(tmp_path / "big", 30), _model_folder(tmp_path / "small", 3)
    return {
        "worker": {"device": "cuda", **worker},
        "state": {"dir": str(tmp_path / "state")},
        "metrics": {"enabled": False},
        "models": {
            "big": {"engine": "hf_vlm", "path": str(big)},
            "small": {"engine": "hf_vlm", "path": str(small)},
        },
        "inboxes": {
            "invoices": {"path": str(tmp_path / "a"), "chain": ["big", "rapid"]},
            "photos": {"path": str(tmp_path / "b"), "chain": ["small"]},
            "boards": {"path": str(tmp_path / "c"), "chain": ["small", "rapid"]},
        },
    }


def test_resident_set_holds_each_chains_first_model_once(tmp_path: Path) -> None:
    """The daemon's chain keeps `count` copies of its head; a head two chains share counts once."""
    settings = Settings.model_validate(_settings(tmp_path, count=2))
    held = resident_models(settings)
    assert [(m.name, m.copies, m.on_gpu) for m in held] == [("big", 2, True), ("small", 1, True)]
    assert [m.weight_bytes for m in held] == [30 * GIB, 3 * GIB]


def test_a_set_too_big_for_the_gpu_is_named(tmp_path: Path) -> None:
    """Over the GPU's memory (with headroom): the message names every model; fitting or unknown: None."""
    held = resident_models(Settings.model_validate(_settings(tmp_path)))
    problem = fit_problem(held, 32 * GIB)
    assert problem is not None
    assert "big (30.0 GiB of weights), small (3.0 GiB of weights)" in problem
    assert fit_problem(held, 80 * GIB) is None
    assert fit_problem(held, None) is None  # no GPU (or no NVML): not refused on a guess
    cpu_only = [ResidentModel("rapid", 1, False, None)]
    assert fit_problem(cpu_only, 1) is None


def test_a_hub_model_is_measured_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id is looked up in the Hugging Face cache's snapshot of refs/main, links followed."""
    repo = tmp_path / "hub" / "models--acme--reader"
    blob = repo / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * 1000)
    snapshot = repo / "snapshots" / "c0ffee"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c0ffee")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = Settings.model_validate(
        {
            "models": {
                "cached": {"engine": "hf_vlm", "path": "acme/reader"},
                "absent": {"engine": "hf_vlm", "path": "acme/absent"},
            }
        }
    )
    assert weight_bytes(settings, "cached") == 1000
    assert weight_bytes(settings, "absent") is None
    assert weight_bytes(settings, "rapid") is None


def test_the_daemon_refuses_at_start_a_set_that_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` exits 2 before loading anything, naming the models, when they do not fit the GPU."""
    # This machine has no GPU: NVML's answer is the one stand-in (a 24 GiB card).
    monkeypatch.setattr(fitting, "gpu_total_bytes", lambda device: 24 * GIB)
    config = write_settings(tmp_path / "s.toml", _settings(tmp_path))
    code = cli.main(["run", "--config", str(config)])
    assert code == 2
    error = capsys.readouterr().err
    assert "do not fit the GPU: big (30.0 GiB of weights), small" in error
    assert not (tmp_path / "state").exists()  # refused before the journal was opened
