"""Inbox profiles: [inboxes.NAME] tables beside [watch] inboxes, and the sets refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.settings import SettingsError, load_settings


def _load(tmp_path: Path, toml: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "s.toml"
    config.write_text(toml)
    settings, _ = load_settings(config)
    return settings


def test_a_table_takes_the_daemon_wide_values_it_leaves_out(tmp_path: Path) -> None:
    """Unset keys of a table come from [watch], [worker] and [outputs]."""
    settings = _load(
        tmp_path,
        f"""
[watch]
settle_seconds = 4
recursive = true
[outputs]
formats = ["md", "json", "txt"]
[inboxes.letters]
path = "{tmp_path / "letters"}"
[inboxes.photos]
path = "{tmp_path / "photos"}"
formats = ["json"]
settle_seconds = 0.5
mode = "polling"
output_dir = "{tmp_path / "out"}"
webhook_url = "http://127.0.0.1:9/done"
""",
    )
    profiles = {profile.name: profile for profile in settings.profiles().values()}
    assert set(profiles) == {"letters", "photos"}  # [watch] inboxes unset: only the tables
    letters, photos = profiles["letters"], profiles["photos"]
    assert letters.formats == ("md", "json", "txt")
    assert (letters.settle_seconds, letters.recursive, letters.mode) == (4, True, "native")
    assert letters.chain == ("rapid",) and letters.output_dir is None
    assert photos.formats == ("json",)
    assert (photos.settle_seconds, photos.mode) == (0.5, "polling")
    assert photos.output_dir == tmp_path / "out"
    assert photos.webhook_url == "http://127.0.0.1:9/done"


def test_the_watch_list_keeps_working_beside_tables_when_set(tmp_path: Path) -> None:
    """A set [watch] inboxes is watched with the daemon-wide values, beside the tables."""
    settings = _load(
        tmp_path,
        f"""
[watch]
inboxes = ["{tmp_path / "plain"}"]
[inboxes.invoices]
path = "{tmp_path / "invoices"}"
""",
    )
    names = sorted(profile.name for profile in settings.profiles().values())
    assert names == ["invoices", "plain"]


def test_without_tables_the_default_inbox_is_watched() -> None:
    """No tables and no list: the one default inbox, as before profiles existed."""
    settings, _ = load_settings(None)
    assert [p.name for p in settings.profiles().values()] == ["inbox"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            '[inboxes.a]\npath = "{t}/a"\n[inboxes.b]\npath = "{t}/a/b"\n',
            "inboxes 'a' ({t}/a) and 'b' ({t}/a/b) overlap",
        ),
        (
            '[inboxes.a]\npath = "{t}/a"\n[inboxes.b]\npath = "{t}/a"\n',
            "inboxes 'a' ({t}/a) and 'b' ({t}/a) overlap",
        ),
        (
            '[inboxes.a]\npath = "{t}/a"\noutput_dir = "{t}/a/out"\n',
            "inboxes.a.output_dir ({t}/a/out) and inbox 'a'",
        ),
        (
            '[inboxes.a]\npath = "{t}/a"\n[inboxes.b]\npath = "{t}/b"\narchive_dir = "{t}/a/done"\n',
            "inboxes.b.archive_dir ({t}/a/done) and inbox 'a'",
        ),
        (
            '[inboxes.a]\npath = "{t}/a"\nfailed_dir = "{t}/a"\n',
            "inboxes.a.failed_dir ({t}/a) and inbox 'a'",
        ),
        (
            '[watch]\ninboxes = ["{t}/x/a"]\n[inboxes.a]\npath = "{t}/y"\n',
            "two inboxes are named 'a'",
        ),
        ('[inboxes.a]\npath = "{t}/a"\nchain = ["nope"]\n', "inboxes.a.chain[0]: unknown model"),
        ('[inboxes.a]\npath = "{t}/a"\nformats = ["md"]\n', 'formats must include "json"'),
        (
            '[inboxes.a]\npath = "{t}/a"\narchive_dir = "{t}/d"\ndelete_after_success = true\n',
            "choose one",
        ),
        ('[inboxes.a]\npath = "{t}/a"\nrecursve = true\n', "inboxes.a.recursve: unknown key"),
    ],
)
def test_sets_that_feed_the_daemon_its_own_files_are_refused(
    tmp_path: Path, body: str, named: str
) -> None:
    """Overlapping inboxes, folders inside an inbox and bad keys stop the load, named."""
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, body.format(t=tmp_path))
    assert named.format(t=tmp_path) in str(caught.value)


def test_an_inbox_reached_through_a_symlink_still_overlaps(tmp_path: Path) -> None:
    """Overlap is judged where links lead too, not only by the names in the file."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(SettingsError, match="overlap"):
        _load(
            tmp_path,
            f'[inboxes.a]\npath = "{tmp_path}/real"\n[inboxes.b]\npath = "{tmp_path}/link/sub"\n',
        )
