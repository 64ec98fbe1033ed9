"""The event of a finished file: its body's fields, and a key stable per file, content and outcome."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.journal.interface import FileKey
from daemon.outputs.paths import OutputPaths
from daemon.webhooks.events import finished_event, idempotency_key, outputs_on_disk

KEY = FileKey("scans", "2024/a.png")


def test_the_key_is_stable_per_file_content_and_outcome() -> None:
    """The same finish gives the same key; another file, content or outcome another key."""
    key = idempotency_key(KEY, "a" * 64, "done")

    assert key == idempotency_key(FileKey("scans", "2024/a.png"), "a" * 64, "done")
    assert len(key) == 64 and int(key, 16) >= 0
    others = {
        idempotency_key(FileKey("scans", "2024/b.png"), "a" * 64, "done"),
        idempotency_key(FileKey("other", "2024/a.png"), "a" * 64, "done"),
        idempotency_key(KEY, "b" * 64, "done"),
        idempotency_key(KEY, "a" * 64, "failed"),
    }
    assert key not in others and len(others) == 4


def test_the_body_names_the_file_its_outcome_outputs_model_and_seconds(tmp_path: Path) -> None:
    """The JSON POSTed carries what a receiver acts on, and its own key."""
    source = tmp_path / "2024" / "a.png"
    event = finished_event(
        "http://h/x",
        KEY,
        source,
        "a" * 64,
        "done",
        {"json": Path(f"{source}.ocr.json"), "md": Path(f"{source}.ocr.md")},
        "rapid",
        1.23456,
        now=1_700_000_000.0,
    )
    body = json.loads(event.body)

    assert event.key == body["idempotency_key"] == idempotency_key(KEY, "a" * 64, "done")
    assert (event.url, event.queued_at) == ("http://h/x", 1_700_000_000.0)
    assert body["file"] == str(source)
    assert (body["inbox"], body["relative_path"]) == ("scans", "2024/a.png")
    assert (body["outcome"], body["model"], body["seconds"]) == ("done", "rapid", 1.235)
    assert body["outputs"] == {"json": f"{source}.ocr.json", "md": f"{source}.ocr.md"}
    assert body["finished_at"] == "2023-11-14T22:13:20.000+00:00"
    assert "error" not in body


def test_a_failed_file_names_its_sidecar_and_error(tmp_path: Path) -> None:
    """A failure's event points at the error sidecar and carries the error."""
    source = tmp_path / "bad.png"
    outputs = outputs_on_disk(OutputPaths.beside(source), "failed")
    event = finished_event(
        "http://h/x", KEY, source, "a" * 64, "failed", outputs, None, 0.5, {"code": "corrupt"}
    )
    body = json.loads(event.body)

    assert body["outputs"] == {"error": f"{source}.ocr.error.json"}
    assert (body["outcome"], body["model"], body["error"]) == ("failed", None, {"code": "corrupt"})


def test_a_name_that_is_not_utf8_still_makes_json(tmp_path: Path) -> None:
    """A file name with undecodable bytes (surrogate-escaped) yields valid, ASCII-only JSON."""
    source = tmp_path / "scan-\udcff.png"
    key = FileKey("scans", "scan-\udcff.png")
    event = finished_event("http://h/x", key, source, "a" * 64, "done", {}, "m", 1.0)

    assert event.body.isascii()
    assert json.loads(event.body)["relative_path"] == "scan-\udcff.png"
