"""deploy/install.sh staged into a temporary root: what it creates, idempotence, uninstall.

The virtual environment (pip installing torch) is skipped with --skip-venv;
everything else runs for real: the service user is created in the staged
root's own passwd/group files (when the tests run as root, as in CI), the unit
is enabled with `systemctl --root`, and the staged unit is checked with
`systemd-analyze verify`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.systemd_units import prepare_verify_root, run_tool
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
UNIT = REPO / "systemd" / "ocr-inbox.service"
AS_ROOT = os.geteuid() == 0

OUTSIDE_INBOX = "/data/scan inbox"
SETTINGS = f"""\
[watch]
inboxes = ["./inbox", "scans/incoming", "{OUTSIDE_INBOX}"]
"""

Snapshot = dict[str, tuple[int, int, int, int, str]]


def seed_root(root: Path) -> None:
    """The least a staged root needs for useradd --root: passwd, group, shadow files."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:\nrender:x:105:\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).touch(mode=0o600)
    nologin = root / "usr/sbin/nologin"
    nologin.parent.mkdir(parents=True)
    nologin.write_text("#!/bin/sh\nexit 1\n")
    nologin.chmod(0o755)


def run_install(root: Path, *options: str, settings: Path | None = None) -> str:
    """Run install.sh into `root`; returns what it printed, fails the test on a non-zero exit."""
    command = ["bash", str(INSTALL), "--root", str(root), *options]
    if settings is not None:
        command += ["--settings", str(settings)]
    if not AS_ROOT:
        command.append("--no-user")
    environ = {key: value for key, value in os.environ.items() if key != "DESTDIR"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=environ, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def snapshot(root: Path) -> Snapshot:
    """Every path under root with its type, mode, owner, group and content (or link target)."""
    entries: Snapshot = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = ""
            entries[str(path.relative_to(root))] = (
                stat.S_IFMT(info.st_mode),
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                content,
            )
    return entries


def account(root: Path, database: str, name: str) -> list[str]:
    for line in (root / "etc" / database).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in {database}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    staged = tmp_path / "root"
    seed_root(staged)
    return staged


@pytest.fixture
def installed(root: Path, settings_file: Path) -> Path:
    run_install(root, "--skip-venv", settings=settings_file)
    return root


def test_second_run_changes_nothing(root: Path, settings_file: Path) -> None:
    """A second install leaves every path, mode, owner and content exactly as the first did."""
    run_install(root, "--skip-venv", settings=settings_file)
    first = snapshot(root)
    run_install(root, "--skip-venv", settings=settings_file)
    assert snapshot(root) == first


def test_installs_settings_unit_and_state(installed: Path, settings_file: Path) -> None:
    """The settings file, the unit and the state directories are installed with their modes."""
    settings = installed / "etc/ocr-inbox/settings.toml"
    assert settings.read_text() == SETTINGS
    assert mode(settings) == 0o640
    assert mode(installed / "etc/ocr-inbox") == 0o750
    unit = installed / "etc/systemd/system/ocr-inbox.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    assert mode(unit) == 0o644
    assert mode(installed / "var/lib/ocr-inbox") == 0o750
    assert (installed / "var/lib/ocr-inbox/hf").is_dir()
    assert not (installed / "opt/ocr-inbox/venv").exists()


def test_creates_inboxes_from_settings(installed: Path) -> None:
    """Relative inboxes land under /srv/ocr-inbox, absolute ones where named, setgid and group-writable."""
    for inbox in ("srv/ocr-inbox/inbox", "srv/ocr-inbox/scans/incoming", OUTSIDE_INBOX[1:]):
        path = installed / inbox
        assert path.is_dir(), inbox
        assert mode(path) == 0o2770, inbox
    assert mode(installed / "srv/ocr-inbox") == 0o750


def test_dropin_opens_inboxes_outside_the_inbox_root(installed: Path) -> None:
    """Inboxes outside /srv/ocr-inbox are made writable in a generated drop-in, quoted."""
    dropin = installed / "etc/systemd/system/ocr-inbox.service.d/10-inboxes.conf"
    lines = dropin.read_text().splitlines()
    assert "[Service]" in lines
    assert f'ReadWritePaths="{OUTSIDE_INBOX}"' in lines


def test_no_dropin_when_every_inbox_is_under_the_root(root: Path, tmp_path: Path) -> None:
    """With only relative inboxes no drop-in is written (the unit already covers them)."""
    settings = tmp_path / "plain.toml"
    settings.write_text('[watch]\ninboxes = ["./inbox"]\n')
    run_install(root, "--skip-venv", settings=settings)
    assert (root / "srv/ocr-inbox/inbox").is_dir()
    assert not (root / "etc/systemd/system/ocr-inbox.service.d").exists()


def test_rerun_drops_a_stale_dropin(installed: Path) -> None:
    """After the operator moves every inbox under /srv/ocr-inbox, a rerun removes the drop-in."""
    (installed / "etc/ocr-inbox/settings.toml").write_text('[watch]\ninboxes = ["./inbox"]\n')
    run_install(installed, "--skip-venv")
    assert not (installed / "etc/systemd/system/ocr-inbox.service.d").exists()


@pytest.mark.skipif(not AS_ROOT, reason="creating users and giving away files needs root")
def test_service_user_owns_state_and_inboxes(installed: Path) -> None:
    """The ocr-inbox system user is created in the staged root, in video/render, owning its dirs."""
    user = account(installed, "passwd", "ocr-inbox")
    assert user[5] == "/var/lib/ocr-inbox"
    assert user[6].endswith("/nologin")
    assert int(user[2]) < 1000
    uid, gid = int(user[2]), int(account(installed, "group", "ocr-inbox")[2])
    for group in ("video", "render"):
        assert "ocr-inbox" in account(installed, "group", group)[3].split(",")
    for owned in ("var/lib/ocr-inbox", "srv/ocr-inbox/inbox", OUTSIDE_INBOX[1:]):
        info = (installed / owned).stat()
        assert (info.st_uid, info.st_gid) == (uid, gid), owned
    settings = (installed / "etc/ocr-inbox/settings.toml").stat()
    assert (settings.st_uid, settings.st_gid) == (0, gid)


@pytest.mark.skipif(not AS_ROOT, reason="creating users needs root")
def test_host_accounts_untouched(root: Path, settings_file: Path) -> None:
    """A staged install never adds the user to the real system's passwd file."""
    before = Path("/etc/passwd").read_bytes()
    run_install(root, "--skip-venv", settings=settings_file)
    assert Path("/etc/passwd").read_bytes() == before


def test_existing_settings_are_kept(root: Path, settings_file: Path) -> None:
    """An operator's settings file is never overwritten, and its inboxes are the ones created."""
    existing = root / "etc/ocr-inbox/settings.toml"
    existing.parent.mkdir(parents=True)
    operator = '# mine\n[watch]\ninboxes = ["/mnt/office"]\n'
    existing.write_text(operator)
    existing.chmod(0o600)
    output = run_install(root, "--skip-venv", settings=settings_file)
    assert existing.read_text() == operator
    assert mode(existing) == 0o600
    assert "kept existing /etc/ocr-inbox/settings.toml" in output
    assert (root / "mnt/office").is_dir()
    assert not (root / "srv/ocr-inbox/scans").exists()


def test_existing_inbox_is_left_alone(root: Path, settings_file: Path) -> None:
    """An inbox folder that already exists keeps its mode (it may be a share or a mount)."""
    existing = root / "srv/ocr-inbox/inbox"
    existing.mkdir(parents=True)
    existing.chmod(0o755)
    run_install(root, "--skip-venv", settings=settings_file)
    assert mode(existing) == 0o755


def test_unit_is_enabled_in_the_staged_root(installed: Path) -> None:
    """The unit is enabled for multi-user.target inside the root, and nothing is started."""
    require_tool("systemctl")
    wants = installed / "etc/systemd/system/multi-user.target.wants/ocr-inbox.service"
    assert os.readlink(wants) == "/etc/systemd/system/ocr-inbox.service"


def test_staged_unit_with_dropin_verifies(installed: Path) -> None:
    """systemd-analyze verify accepts the installed unit together with its generated drop-in."""
    analyze = require_tool("systemd-analyze")
    prepare_verify_root(installed, UNIT.read_text())
    result = run_tool(analyze, "verify", f"--root={installed}", "ocr-inbox.service")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_uninstall_removes_unit_keeps_data(installed: Path, settings_file: Path) -> None:
    """--uninstall removes the unit, drop-in and /opt; keeps settings, inboxes and state; repeats cleanly."""
    venv = installed / "opt/ocr-inbox/venv/bin"
    venv.mkdir(parents=True)  # stands in for the venv --skip-venv did not build
    output = run_install(installed, "--uninstall")
    assert "kept /etc/ocr-inbox" in output
    for gone in (
        "etc/systemd/system/ocr-inbox.service",
        "etc/systemd/system/ocr-inbox.service.d",
        "etc/systemd/system/multi-user.target.wants/ocr-inbox.service",
        "opt/ocr-inbox",
    ):
        assert not (installed / gone).exists(), gone
    for kept in (
        "etc/ocr-inbox/settings.toml",
        "srv/ocr-inbox/inbox",
        OUTSIDE_INBOX[1:],
        "var/lib/ocr-inbox/hf",
    ):
        assert (installed / kept).exists(), kept
    after_first = snapshot(installed)
    run_install(installed, "--uninstall")
    assert snapshot(installed) == after_first


def test_uninstall_keeps_operator_overrides(installed: Path) -> None:
    """An operator's own drop-in (systemctl edit) survives --uninstall."""
    override = installed / "etc/systemd/system/ocr-inbox.service.d/override.conf"
    override.write_text("[Service]\nEnvironment=X=1\n")
    output = run_install(installed, "--uninstall")
    assert override.exists()
    assert not (installed / "etc/systemd/system/ocr-inbox.service.d/10-inboxes.conf").exists()
    assert "your own overrides" in output


def test_unknown_option_is_refused(root: Path) -> None:
    """A mistyped option stops the script before it changes anything."""
    before = snapshot(root)
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--skip-venvv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "--skip-venvv" in result.stderr
    assert snapshot(root) == before


def test_profile_folders_are_made_and_opened_to_the_service(root: Path, tmp_path: Path) -> None:
    """[inboxes.NAME] tables: each inbox, output_dir and archive_dir is created and, outside the
    inbox root, listed in the drop-in's ReadWritePaths=; the unset [watch] inboxes adds nothing."""
    settings = tmp_path / "profiles.toml"
    settings.write_text(
        '[inboxes.invoices]\npath = "invoices"\noutput_dir = "/srv/ocr-out/invoices"\n'
        'archive_dir = "/srv/ocr-archive"\n'
    )
    run_install(root, "--skip-venv", settings=settings)
    for folder in ("srv/ocr-inbox/invoices", "srv/ocr-out/invoices", "srv/ocr-archive"):
        assert (root / folder).is_dir(), folder
    assert not (root / "srv/ocr-inbox/inbox").exists()
    dropin = root / "etc/systemd/system/ocr-inbox.service.d/10-inboxes.conf"
    assert 'ReadWritePaths="/srv/ocr-out/invoices" "/srv/ocr-archive"' in dropin.read_text()
