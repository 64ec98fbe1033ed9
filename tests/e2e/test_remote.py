"""The remote engine end to end: the real daemon against the fault-injecting server.

The server runs in the test's process (harness/fake_server.py); the daemon and
its worker are real processes that reach it over loopback TCP.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness import pages
from harness.driver import (
    base_settings,
    outputs_of,
    read_json,
    run_cli,
    running_daemon,
    wait_until,
    write_settings,
)
from harness.drops import place
from harness.fake_server import FakeServer, Reply
from tests.support.metric_names import names_in_exposition, names_used_by_deploy

PAGE = pages.render_page(("Remote page",), width=320, height=240, font_px=20, margin=10)


def remote_model(server: FakeServer, **values: Any) -> dict[str, Any]:
    model = {
        "engine": "openai",
        "base_url": server.url,
        "model": server.served_model,
        "max_in_flight": 8,
        "retry_backoff_seconds": 0.05,
        "max_retries": 1,
        "probe_interval_seconds": 0.5,
    }
    model.update(values)
    return model


def readyz(daemon: Any) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(daemon.url("/readyz"), timeout=5) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def test_once_sends_pages_of_many_files_at_once(tmp_path: Path) -> None:
    """`once --config` sends the pages of several files together and writes each file's outputs, served name included."""
    images = [pages.save_png(PAGE, tmp_path / f"scan-{index}.png") for index in range(6)]
    pdf = pages.save_pdf([PAGE, PAGE, PAGE], tmp_path / "three.pdf")
    with FakeServer() as server:
        server.default = Reply(delay=0.5)
        config = tmp_path / "settings.toml"
        write_settings(
            config,
            {"worker": {"chain": ["remote"]}, "models": {"remote": remote_model(server)}},
        )
        result = run_cli("once", "--config", str(config), *map(str, [*images, pdf]), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert server.requests == 9
    assert server.max_in_flight == 8  # pages of several files at once, up to max_in_flight
    document = read_json(outputs_of(pdf)["json"])
    assert document["model"]["name"] == "remote"
    assert document["model"]["engine"] == "openai"
    assert document["model"]["served_model"] == server.served_model
    assert [page["index"] for page in document["pages"]] == [0, 1, 2]
    for image in images:
        assert "Hello from the server." in outputs_of(image)["md"].read_text()


def test_a_server_that_goes_down_falls_back_and_comes_back(tmp_path: Path) -> None:
    """Server down: the chain falls back, no file gets an error sidecar or is done twice; server up: it fails back."""
    inbox = tmp_path / "inbox"
    with FakeServer() as server:
        server.default = Reply(delay=0.2)
        settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["remote", "fake"]})
        settings["models"] = {"remote": remote_model(server), "fake": {"engine": "faulty"}}
        with running_daemon(tmp_path, settings) as daemon:
            daemon.wait_ready()
            first = [
                place(inbox / f"a{index}.png", lambda p: pages.save_png(PAGE, p))
                for index in range(4)
            ]
            daemon.wait_for("file.done", count=4)
            server.stop()
            second = [
                place(inbox / f"b{index}.png", lambda p: pages.save_png(PAGE, p))
                for index in range(6)
            ]
            daemon.wait_for("file.done", count=10, timeout=120)
            fallen = daemon.find("chain.fallback")
            assert fallen and fallen[0]["reason"] == "unavailable"
            status, reason = readyz(daemon)
            assert status == 200 and "remote: unavailable" in reason
            exposition = urllib.request.urlopen(daemon.url("/metrics"), timeout=5).read().decode()
            server_names = {n for n in names_used_by_deploy() if n.startswith("ocr_inbox_server")}
            assert server_names and server_names <= names_in_exposition(exposition)
            assert daemon.metric("ocr_inbox_server_up", model="remote") == 0
            server.start()
            daemon.wait_for("chain.fail_back", to_model="remote", timeout=60)
            third = place(inbox / "c.png", lambda p: pages.save_png(PAGE, p))
            daemon.wait_for("file.done", file=str(third), timeout=60)
            wait_until(lambda: readyz(daemon) == (200, "ready: serving with remote"), timeout=30)
            done = daemon.find("file.done")
    files = [*first, *second, third]
    assert sorted(record["file"] for record in done) == sorted(map(str, files))  # each once
    assert all("error" not in outputs_of(path) for path in files)
    models = {path.name: read_json(outputs_of(path)["json"])["model"]["name"] for path in files}
    assert {models[path.name] for path in first} == {"remote"}
    assert {models[path.name] for path in second} == {"fake"}
    assert models[third.name] == "remote"
    assert all(not read_json(outputs_of(p)["json"])["fallback_trail"] for p in second)


def test_a_wrong_key_falls_back_without_error_sidecars(tmp_path: Path) -> None:
    """401 on every request: the chain falls back and the files are done by the next model, none failed."""
    inbox = tmp_path / "inbox"
    with FakeServer() as server:
        server.default = Reply("status", status=401, message="invalid api key")
        settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["remote", "fake"]})
        settings["models"] = {
            "remote": remote_model(server, probe_interval_seconds=60),
            "fake": {"engine": "faulty"},
        }
        with running_daemon(tmp_path, settings) as daemon:
            daemon.wait_ready()
            files = [
                place(inbox / f"k{index}.png", lambda p: pages.save_png(PAGE, p))
                for index in range(5)
            ]
            daemon.wait_for("file.done", count=5, timeout=120)
            assert daemon.find("chain.fallback", reason="unavailable")
            assert daemon.metric("ocr_inbox_server_errors_total", model="remote", status="401") >= 1
    assert all("error" not in outputs_of(path) for path in files)
    assert {read_json(outputs_of(p)["json"])["model"]["name"] for p in files} == {"fake"}


def test_sigterm_finishes_the_files_in_flight(tmp_path: Path) -> None:
    """SIGTERM with several files at the server: those in flight are finished, the rest stay pending, none is lost."""
    inbox = tmp_path / "inbox"
    with FakeServer() as server:
        server.default = Reply(delay=1.5)
        settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["remote"]})
        settings["models"] = {"remote": remote_model(server, max_in_flight=4)}
        with running_daemon(tmp_path, settings) as daemon:
            daemon.wait_ready()
            files = [
                place(inbox / f"t{index}.png", lambda p: pages.save_png(PAGE, p))
                for index in range(8)
            ]
            wait_until(lambda: server.in_flight >= 4, timeout=30)
            assert daemon.stop() == 0
            states = {path.name: daemon.journal_state(path) for path in files}
    finished = [path for path in files if "json" in outputs_of(path)]
    assert len(finished) >= 4  # those at the server when the signal came
    assert all("error" not in outputs_of(path) for path in files)
    # The rest wait in the journal (or, not yet stable when the signal came, for the next start's scan).
    assert {states[p.name] for p in files if p not in finished} <= {"pending", None}
    assert {states[p.name] for p in finished} == {"done"}
