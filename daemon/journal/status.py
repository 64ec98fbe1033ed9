"""`ocr-inbox status`: what the journal knows, read without a running daemon and without joining as a node.

Keys of the report (`--json` prints it as is):

- `backend`: "sqlite" or "postgresql"; `journal`: the file, or the URL with its password redacted.
- `files`: rows per state (`pending`, `done`, `failed`).
- `in_flight`: pending files some node holds the claim of, each with `inbox`,
  `path`, `node`, `lease_age_seconds` (since the claim was last renewed) and
  `expired` (its lease ran out: another node may take it over). The SQLite
  journal keeps claims in its daemon's memory: always empty there.
- `recent_failures`: the last (at most 20) failed files, newest first, with
  `inbox`, `path` and `error`.
- `nodes`: every daemon that used the shared journal, with `node`, `host`,
  `pid`, `heartbeat_age_seconds`, `lease_seconds` and `stopped` (it closed
  cleanly); empty for SQLite.
- `outbox`: completion webhooks stored and not yet delivered, per node that
  has any: `node`, `waiting` (how many) and `oldest_age_seconds` (since the
  oldest was stored, by the database's clock against the storing host's).
  Each node delivers only its own, so a dead node's events wait here until it
  comes back under its name. For SQLite one entry, named as the daemon of
  these settings names itself; empty when nothing waits.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from daemon.journal.interface import JournalUnusable
from daemon.journal.opening import node_of
from daemon.settings.sections import StateSettings

RECENT_FAILURES = 20


class JournalAway(Exception):
    """The shared journal's database cannot be reached now (exit 1)."""


def read_status(state: StateSettings) -> dict[str, Any]:
    if state.url:
        return _postgres(state)
    return _sqlite(state.dir, node_of(state))


def _sqlite(state_dir: Path, node: str) -> dict[str, Any]:
    from daemon.journal.sqlite import SqliteJournal

    path = state_dir / SqliteJournal.FILENAME
    if not path.exists():
        raise JournalUnusable(f"no journal at {path} (is state.dir, or --state-dir, right?)")
    # Read-only: a status look never changes (or migrates) a daemon's journal.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        counts = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        failures = db.execute(
            "SELECT inbox, relative, error FROM files WHERE state = 'failed'"
            " ORDER BY updated_at DESC LIMIT ?",
            (RECENT_FAILURES,),
        ).fetchall()
        outbox = _sqlite_outbox(db, node)
    except sqlite3.Error as error:
        raise JournalUnusable(f"{path}: {error}") from error
    finally:
        db.close()
    return {
        "backend": "sqlite",
        "journal": str(path),
        "files": counts,
        "in_flight": [],
        "recent_failures": [{"inbox": i, "path": r, "error": e} for i, r, e in failures],
        "nodes": [],
        "outbox": outbox,
    }


def _sqlite_outbox(db: sqlite3.Connection, node: str) -> list[dict[str, Any]]:
    """The one node's waiting webhooks (a journal older than the outbox has none)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'webhooks'").fetchone() is None:
        return []
    waiting, oldest = db.execute("SELECT COUNT(*), MIN(queued_at) FROM webhooks").fetchone()
    if not waiting:
        return []
    return [_outbox_entry(node, waiting, time.time() - oldest)]


def _outbox_entry(node: str, waiting: int, age: float) -> dict[str, Any]:
    return {"node": node, "waiting": int(waiting), "oldest_age_seconds": round(float(age), 1)}


def _postgres(state: StateSettings) -> dict[str, Any]:
    import psycopg

    from daemon.journal.postgres.connection import Database, read_password

    password = read_password(Path(state.password_file) if state.password_file else None)
    database = Database(state.url, password, "ocr-inbox status", patient=False)
    try:
        with database.open_connection() as db:
            counts = dict(
                db.execute("SELECT state, COUNT(*) FROM ocr_inbox_files GROUP BY state").fetchall()
            )
            in_flight = db.execute(
                "SELECT inbox, relative, claim_node,"
                " extract(epoch FROM clock_timestamp() - (lease_until"
                "  - make_interval(secs => COALESCE(n.lease_seconds, 0)))),"
                " lease_until <= clock_timestamp()"
                " FROM ocr_inbox_files f LEFT JOIN ocr_inbox_nodes n ON n.node = f.claim_node"
                " WHERE f.state = 'pending' AND f.claim_node IS NOT NULL ORDER BY f.admitted_at"
            ).fetchall()
            failures = db.execute(
                "SELECT inbox, relative, error FROM ocr_inbox_files WHERE state = 'failed'"
                " ORDER BY updated_at DESC LIMIT %s",
                (RECENT_FAILURES,),
            ).fetchall()
            nodes = db.execute(
                "SELECT node, host, pid, extract(epoch FROM clock_timestamp() - heartbeat_at),"
                " lease_seconds, stopped_at IS NOT NULL FROM ocr_inbox_nodes ORDER BY node"
            ).fetchall()
            outbox = db.execute(
                "SELECT node, COUNT(*), extract(epoch FROM clock_timestamp()) - MIN(queued_at)"
                " FROM ocr_inbox_webhooks GROUP BY node ORDER BY node"
            ).fetchall()
    except psycopg.errors.UndefinedTable as error:
        raise JournalUnusable(f"{database.shown}: no ocr-inbox journal in this database") from error
    except psycopg.OperationalError as error:
        database.raise_if_final(error)
        raise JournalAway(f"{database.shown}: {database.scrub(str(error)).strip()}") from error
    return {
        "backend": "postgresql",
        "journal": database.shown,
        "files": counts,
        "in_flight": [
            {
                "inbox": inbox,
                "path": relative,
                "node": node,
                "lease_age_seconds": round(float(age), 1),
                "expired": bool(expired),
            }
            for inbox, relative, node, age, expired in in_flight
        ],
        "recent_failures": [{"inbox": i, "path": r, "error": e} for i, r, e in failures],
        "nodes": [
            {
                "node": node,
                "host": host,
                "pid": pid,
                "heartbeat_age_seconds": round(float(age), 1),
                "lease_seconds": lease,
                "stopped": bool(stopped),
            }
            for node, host, pid, age, lease, stopped in nodes
        ],
        "outbox": [_outbox_entry(node, waiting, age) for node, waiting, age in outbox],
    }


def render(report: dict[str, Any]) -> str:
    """The report for a person."""
    lines = [f"journal: {report['journal']} ({report['backend']})"]
    files = report["files"]
    lines.append(
        "files: " + ", ".join(f"{files.get(s, 0)} {s}" for s in ("pending", "done", "failed"))
    )
    for node in report["nodes"]:
        state = "stopped" if node["stopped"] else f"heartbeat {node['heartbeat_age_seconds']} s ago"
        lines.append(f"node {node['node']} on {node['host']} (pid {node['pid']}): {state}")
    for item in report["in_flight"]:
        late = ", lease ran out" if item["expired"] else ""
        lines.append(
            f"in flight: {item['inbox']}:{item['path']} on {item['node']}"
            f" (lease renewed {item['lease_age_seconds']} s ago{late})"
        )
    for item in report["recent_failures"]:
        lines.append(f"failed: {item['inbox']}:{item['path']}: {item['error']}")
    nodes = {node["node"]: node for node in report["nodes"]}
    for item in report["outbox"]:
        node = nodes.get(item["node"])
        gone = node is not None and (
            node["stopped"] or node["heartbeat_age_seconds"] > node["lease_seconds"]
        )
        lines.append(
            f"webhooks waiting on {item['node']}: {item['waiting']}"
            f" (oldest stored {item['oldest_age_seconds']} s ago)"
            + ("; that node is gone: they wait until it runs again under its name" if gone else "")
        )
    return "\n".join(lines)
