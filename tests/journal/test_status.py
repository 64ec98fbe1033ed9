"""`ocr-inbox status`: the journal's view for an operator, on both backends, with no daemon running."""

from __future__ import annotations

import json
import time
from pathlib import Path

from daemon.journal.interface import FileKey, WebhookEvent
from daemon.journal.opening import default_node, open_journal
from daemon.journal.sqlite import SqliteJournal
from daemon.settings.sections import StateSettings
from harness.driver import run_cli
from harness.postgres_cluster import ROLE_PASSWORD

A, B = FileKey("scans", "a.png"), FileKey("scans", "b.png")
HOOK = "http://127.0.0.1:9/hook"


def test_status_of_a_sqlite_journal(tmp_path: Path) -> None:
    """Counts per state and recent failures from the state folder; exit 0; a folder without a journal exits 2."""
    journal = SqliteJournal.open(tmp_path / "state")
    journal.admit(A, 1, 1, "a" * 64)
    journal.admit(B, 1, 1, "b" * 64)
    journal.claim(B)
    stored = WebhookEvent(key="k", url=HOOK, body="{}", queued_at=time.time() - 100)
    journal.mark_failed(B, "b" * 64, 1, 1, "poison page", webhook=stored)
    journal.close()
    result = run_cli("status", "--json", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "sqlite"
    assert report["files"] == {"pending": 1, "failed": 1}
    assert report["recent_failures"] == [
        {"inbox": "scans", "path": "b.png", "error": "poison page"}
    ]
    [waiting] = report["outbox"]
    assert (waiting["node"], waiting["waiting"]) == (default_node(tmp_path / "state"), 1)
    assert 100 <= waiting["oldest_age_seconds"] < 400  # stored 100 s before the test's "now"
    missing = run_cli("status", "--state-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 2 and "no journal" in missing.stderr


def test_status_of_a_shared_journal(tmp_path: Path, pg_url: str) -> None:
    """Files in flight with their node, and each node's heartbeat; the password never printed."""
    journal = open_journal(StateSettings(dir=tmp_path, url=pg_url, node="gpu1", lease_seconds=30))
    try:
        journal.admit(A, 1, 1, "a" * 64)
        assert journal.claim(A)
        config = tmp_path / "settings.toml"
        config.write_text(f'[state]\nurl = "{pg_url}"\n')
        result = run_cli("status", "--json", "--config", str(config), cwd=tmp_path)
        text = run_cli("status", "--config", str(config), cwd=tmp_path)
    finally:
        journal.close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "postgresql" and report["files"] == {"pending": 1}
    [flight] = report["in_flight"]
    assert (flight["path"], flight["node"], flight["expired"]) == ("a.png", "gpu1", False)
    assert [node["node"] for node in report["nodes"]] == ["gpu1"]
    assert report["nodes"][0]["heartbeat_age_seconds"] < 30
    assert "in flight: scans:a.png on gpu1" in text.stdout
    assert ROLE_PASSWORD not in result.stdout + result.stderr + text.stdout + text.stderr


def test_status_with_the_database_away_exits_1(tmp_path: Path) -> None:
    """A shared journal whose server does not answer: exit 1 naming it, at once (no waiting)."""
    config = tmp_path / "settings.toml"
    config.write_text('[state]\nurl = "postgresql://ocr:secret@127.0.0.1:9/ocr"\n')
    result = run_cli("status", "--config", str(config), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "secret" not in result.stderr


def test_status_shows_each_nodes_waiting_webhooks(tmp_path: Path, pg_url: str) -> None:
    """The outbox per node: a stopped node's undelivered events are shown, and said to wait for it."""
    for node, key in (("gpu1", A), ("gpu2", B)):
        journal = open_journal(StateSettings(dir=tmp_path, url=pg_url, node=node))
        journal.admit(key, 1, 1, "a" * 64)
        assert journal.claim(key)
        for name in ("k1", "k2") if node == "gpu2" else ("k1",):
            event = WebhookEvent(key=f"{node}-{name}", url=HOOK, body="{}", queued_at=1.0)
            journal.mark_done(key, "a" * 64, 1, 1, webhook=event, outbox_limit=10)
            journal.reopen(key)
            assert journal.claim(key)
        journal.close()  # both stopped; their events were never delivered
    config = tmp_path / "settings.toml"
    config.write_text(f'[state]\nurl = "{pg_url}"\n')
    result = run_cli("status", "--json", "--config", str(config), cwd=tmp_path)
    text = run_cli("status", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outbox = json.loads(result.stdout)["outbox"]
    assert [(item["node"], item["waiting"]) for item in outbox] == [("gpu1", 1), ("gpu2", 2)]
    assert all(item["oldest_age_seconds"] > 1e6 for item in outbox)  # stored at Unix time 1.0
    assert "webhooks waiting on gpu2: 2" in text.stdout and "that node is gone" in text.stdout
