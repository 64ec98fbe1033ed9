"""The remote engine against a real server: `transformers serve` with the tests' tiny Qwen2-VL on CPU.

The model is randomly initialised, so its text is noise: the tests assert on
what must hold (every file done once, by the server's model, nothing lost when
the server dies mid-backlog), not on the words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import pages
from harness.driver import base_settings, outputs_of, read_json, running_daemon
from harness.drops import place
from harness.inference_server import TransformersServer

pytestmark = pytest.mark.slow

PAGE = pages.render_page(("Real server page",), width=224, height=224, font_px=20, margin=10)


def remote(server: TransformersServer) -> dict[str, Any]:
    return {
        "engine": "openai",
        "base_url": server.url,
        "model": server.served_model,
        "max_in_flight": 4,
        "max_new_tokens": 16,
        "retry_backoff_seconds": 0.1,
        "max_retries": 1,
        "probe_interval_seconds": 0.5,
    }


def test_files_go_through_the_real_server(
    tmp_path: Path, transformers_server: TransformersServer
) -> None:
    """Files dropped in the inbox are recognised by the served model: outputs name it and its family."""
    inbox = tmp_path / "inbox"
    settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["served"]})
    settings["models"] = {"served": remote(transformers_server)}
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=120)
        files = [
            place(inbox / f"page-{index}.png", lambda p: pages.save_png(PAGE, p))
            for index in range(4)
        ]
        daemon.wait_for("file.done", count=4, timeout=300)
        tokens = daemon.metric("ocr_inbox_server_tokens_total", model="served", kind="prompt")
    assert tokens > 0
    for path in files:
        model = read_json(outputs_of(path)["json"])["model"]
        assert (model["name"], model["engine"], model["family"]) == ("served", "openai", "qwen2_vl")
        assert model["served_model"] == transformers_server.served_model


def test_the_server_killed_mid_backlog_loses_nothing(
    tmp_path: Path, transformers_server: TransformersServer
) -> None:
    """Killed mid-backlog: the chain falls back, every file is done once; restarted: the chain fails back."""
    inbox = tmp_path / "inbox"
    settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["served", "fake"]})
    settings["models"] = {"served": remote(transformers_server), "fake": {"engine": "faulty"}}
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=120)
        files = [
            place(inbox / f"backlog-{index}.png", lambda p: pages.save_png(PAGE, p))
            for index in range(12)
        ]
        daemon.wait_for("file.done", count=2, timeout=300)
        transformers_server.kill()
        try:
            daemon.wait_for("file.done", count=12, timeout=300)
            assert daemon.find("chain.fallback", reason="unavailable")
        finally:
            transformers_server.start()
        daemon.wait_for("chain.fail_back", to_model="served", timeout=120)
        late = place(inbox / "after.png", lambda p: pages.save_png(PAGE, p))
        daemon.wait_for("file.done", file=str(late), timeout=300)
        done = [record["file"] for record in daemon.find("file.done")]
    assert sorted(done) == sorted(map(str, [*files, late]))  # each exactly once
    names = {read_json(outputs_of(path)["json"])["model"]["name"] for path in files}
    assert names == {"served", "fake"}
    assert all("error" not in outputs_of(path) for path in [*files, late])
    assert read_json(outputs_of(late)["json"])["model"]["name"] == "served"
