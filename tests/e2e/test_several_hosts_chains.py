"""Fallback state is per node: a host whose inbox chain has no model left lets the file go to a host whose chain works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.driver import Daemon, base_settings, outputs_of, read_json, start_daemon, wait_until
from harness.drops import drop_png

pytestmark = pytest.mark.slow

LEASE_SECONDS = 3.0


def _node(root: Path, share: Path, url: str, node: str, scans_chain: list[str]) -> dict[str, Any]:
    """A node's settings: `letters` on the daemon's chain, `scans` on `scans_chain`, polling the share."""
    settings = base_settings(root / "unused", root / "state", worker={"chain": ["steady"]})
    del settings["watch"]["inboxes"]
    settings["inboxes"] = {
        "letters": {"path": str(share / "letters"), "chain": ["steady"]},
        "scans": {"path": str(share / "scans"), "chain": scans_chain},
    }
    settings["models"] = {
        "steady": {"engine": "faulty"},
        # Kills its worker on every file, as a model broken on one host's GPU would.
        "crashy": {"engine": "faulty", "rules": [{"match": "*", "fault": "crash"}]},
    }
    settings["recovery"] = {
        "max_fatal_failures": 2,
        "attempts_per_model": 5,
        "cooldown_seconds": 600,
        "stop_grace_seconds": 1.0,
    }
    settings["watch"].update({"mode": "polling", "poll_interval_seconds": 0.3})
    settings["state"].update({"url": url, "node": node, "lease_seconds": LEASE_SECONDS})
    return settings


def test_a_node_whose_chain_gives_way_lets_its_file_go_to_another_node(
    tmp_path: Path, pg_url: str
) -> None:
    """Node a's model for `scans` dies K times on a claimed file: a's chain waits and lets the claim
    go, node b (a working chain) takes the file over and writes the one output set."""
    share = tmp_path / "share"
    for folder in (share / "letters", share / "scans", tmp_path / "a", tmp_path / "b"):
        folder.mkdir(parents=True)
    daemons: list[Daemon] = []
    try:
        a_settings = _node(tmp_path / "a", share, pg_url, "a", ["crashy"])
        a = start_daemon(tmp_path / "a", a_settings, inbox=share / "scans")
        daemons.append(a)
        a.wait_ready()
        path = drop_png(share / "scans" / "scan.png", seed=9300)
        a.wait_for("file.dispatched", file=str(path))  # a holds the claim first
        b_settings = _node(tmp_path / "b", share, pg_url, "b", ["steady"])
        b = start_daemon(tmp_path / "b", b_settings, inbox=share / "scans")
        daemons.append(b)
        b.wait_ready()
        [exhausted] = a.wait_for("chain.exhausted", timeout=60)
        assert exhausted["inboxes"] == ["scans"]
        b.wait_for("file.done", file=str(path), timeout=60)
        document = read_json(outputs_of(path)["json"])
        assert (document["node"], document["model"]["name"]) == ("b", "steady")
        assert a.find("file.done") == [] and a.find("file.failed") == []
        assert not Path(f"{path}.ocr.error.json").exists()
        assert a.metric("ocr_inbox_chain_position", inbox="scans") == -1
        assert a.metric("ocr_inbox_chain_position", inbox="letters") == 0
        assert b.metric("ocr_inbox_chain_position", inbox="scans") == 0
        letter = drop_png(share / "letters" / "letter.png", seed=9301)
        # a still serves its other inbox: the letter is done once, by one of the two.
        wait_until(lambda: any(d.find("file.done", file=str(letter)) for d in daemons), 60)
        assert sum(len(d.find("file.done", file=str(letter))) for d in daemons) == 1
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.kill()
