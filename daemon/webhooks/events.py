"""The event a finished file announces: its JSON body and its idempotency key.

The key is stable for one file (inbox and path below it), one content
(SHA-256) and one outcome: a file done again after its outputs were removed
announces the same key, and a receiver that already has it can drop it.
Delivery is at least once (a restart between the receiver's answer and the
journal's note sends it again), so receivers should deduplicate by key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from daemon.journal.interface import FileKey, WebhookEvent
from daemon.outputs.ownership import listed_outputs
from daemon.outputs.writing import OutputPaths, read_owned_json

EVENT_TYPE = "ocr_inbox.file_finished"
SCHEMA_VERSION = 1

Outcome = Literal["done", "failed"]


def idempotency_key(key: FileKey, sha256: str, outcome: Outcome) -> str:
    """Hex SHA-256 of what identifies this finish: the file, its content, the outcome."""
    identity = "\0".join((key.inbox, key.relative, sha256, outcome))
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()


def finished_event(
    url: str,
    key: FileKey,
    path: Path,
    sha256: str,
    outcome: Outcome,
    outputs: Mapping[str, Path],
    model: str | None,
    seconds: float | None,
    error: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> WebhookEvent:
    """The event for a file that finished as `outcome`, to be POSTed to `url`.

    `model` and `seconds` are None for a file whose outcome was found on disk
    after a crash (the run that made it is gone); `now` is Unix time.
    """
    now = time.time() if now is None else now
    event_key = idempotency_key(key, sha256, outcome)
    body: dict[str, Any] = {
        "type": EVENT_TYPE,
        "version": SCHEMA_VERSION,
        "idempotency_key": event_key,
        "file": str(path),
        "inbox": key.inbox,
        "relative_path": key.relative,
        "sha256": sha256,
        "outcome": outcome,
        "outputs": {name: str(output) for name, output in outputs.items()},
        "model": model,
        "seconds": None if seconds is None else round(seconds, 3),
        "finished_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
    }
    if error is not None:
        body["error"] = dict(error)
    # surrogateescape: a file name that is not UTF-8 still makes valid JSON (escaped).
    text = json.dumps(body, ensure_ascii=True, default=str)
    return WebhookEvent(key=event_key, url=url, body=text, queued_at=now)


def outputs_on_disk(paths: OutputPaths, outcome: Outcome) -> dict[str, Path]:
    """The outputs an event names: the set our JSON lists (itself too), or the error sidecar."""
    if outcome == "failed":
        return {"error": paths.error}
    listed = listed_outputs(read_owned_json(paths.json))
    return {format: paths.of(format) for format in ("json", *listed)}
