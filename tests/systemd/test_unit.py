"""systemd/ocr-inbox.service: valid for systemd, hardened, and consistent with the settings."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from daemon.cli import EXIT_USAGE
from daemon.settings import LimitsSettings, RecoverySettings
from daemon.supervising.arbiter import EXIT_NO_MODEL
from tests.support.systemd_units import (
    executables,
    parse_exposure,
    prepare_verify_root,
    run_tool,
)
from tests.support.tools import require_tool

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ocr-inbox.service"
UNIT_NAME = UNIT.name

_SPAN = re.compile(r"^(\d+)(s|min|h)$")
_SPAN_SECONDS = {"s": 1, "min": 60, "h": 3600}


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value the key is given, in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def seconds(span: str) -> int:
    """A systemd time span of the simple forms this unit uses (90s, 6min, 1h)."""
    found = _SPAN.match(span)
    assert found, f"unexpected time span format: {span!r}"
    return int(found.group(1)) * _SPAN_SECONDS[found.group(2)]


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return directives(UNIT.read_text())["Service"]


def only(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


def verify(root: Path) -> str:
    """Everything `systemd-analyze verify` says about the unit staged under `root`."""
    analyze = require_tool("systemd-analyze")
    result = run_tool(analyze, "verify", f"--root={root}", UNIT_NAME)
    return f"exit status {result.returncode}\n{result.stdout}{result.stderr}".strip()


def stage(root: Path, unit_text: str) -> None:
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT_NAME).write_text(unit_text)
    prepare_verify_root(root, unit_text)


def test_verify_passes(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit as shipped, with no warning at all."""
    stage(tmp_path, UNIT.read_text())
    assert verify(tmp_path) == "exit status 0"


def test_verify_reports_a_misspelled_directive(tmp_path: Path) -> None:
    """The verify check notices a broken unit (so its silence above means something)."""
    broken = UNIT.read_text().replace("ProtectClock=yes", "ProtectClok=yes")
    stage(tmp_path, broken)
    assert "ProtectClok" in verify(tmp_path)


def test_verify_reports_a_missing_executable(tmp_path: Path) -> None:
    """verify fails when the program in ExecStart= does not exist in the root."""
    text = UNIT.read_text()
    stage(tmp_path, text)
    (tmp_path / executables(text)[0].lstrip("/")).unlink()
    assert "not executable" in verify(tmp_path)


def test_security_exposure_at_most_medium(capsys: pytest.CaptureFixture[str]) -> None:
    """systemd-analyze security --offline rates the unit MEDIUM exposure or better."""
    analyze = require_tool("systemd-analyze")
    result = run_tool(analyze, "security", "--offline=true", str(UNIT))
    assert result.returncode == 0, result.stdout + result.stderr
    exposure = parse_exposure(result.stdout)
    with capsys.disabled():
        print(f"\nsystemd-analyze security: {UNIT_NAME} exposure {exposure.score} {exposure.level}")
    assert exposure.at_most("MEDIUM"), result.stdout
    assert exposure.score < 5.0, result.stdout


def test_security_rating_tells_weak_units_apart(tmp_path: Path) -> None:
    """An unhardened unit rates worse than MEDIUM, so the rating check above can fail."""
    analyze = require_tool("systemd-analyze")
    weak = tmp_path / "weak.service"
    weak.write_text("[Service]\nExecStart=/bin/true\n")
    exposure = parse_exposure(run_tool(analyze, "security", "--offline=true", str(weak)).stdout)
    assert not exposure.at_most("MEDIUM")


def test_notify_type_and_watchdog(service: dict[str, list[str]]) -> None:
    """The daemon notifies systemd (main process only) and is watched by WatchdogSec=."""
    assert only(service, "Type") == "notify"
    assert only(service, "NotifyAccess") == "main"
    assert seconds(only(service, "WatchdogSec")) > 0
    assert only(service, "Restart") == "on-failure"
    assert only(service, "KillMode") == "mixed"
    assert only(service, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_timeouts_cover_the_settings_deadlines(service: dict[str, list[str]]) -> None:
    """TimeoutStopSec outlasts a page in progress; TimeoutStartSec covers a model load."""
    limits, recovery = LimitsSettings(), RecoverySettings()
    stop = seconds(only(service, "TimeoutStopSec"))
    assert stop > limits.page_deadline_seconds + recovery.stop_grace_seconds
    assert seconds(only(service, "TimeoutStartSec")) >= limits.load_deadline_seconds
    assert seconds(only(service, "RestartSec")) > 0


def test_invalid_settings_are_not_restarted(service: dict[str, list[str]]) -> None:
    """The exit status for invalid settings stops the restart loop; others restart."""
    assert only(service, "RestartPreventExitStatus") == str(EXIT_USAGE)
    assert str(EXIT_NO_MODEL) not in only(service, "RestartPreventExitStatus").split()


def test_start_limit_in_unit_section() -> None:
    """Crash loops are bounded by a start limit (which systemd reads from [Unit])."""
    unit = directives(UNIT.read_text())["Unit"]
    assert seconds(unit["StartLimitIntervalSec"][0]) > 0
    assert int(unit["StartLimitBurst"][0]) > 1


def test_runs_installed_daemon_as_service_user(service: dict[str, list[str]]) -> None:
    """ExecStart runs the venv's ocr-inbox with the installed settings and state paths."""
    assert only(service, "ExecStart").split() == [
        "/opt/ocr-inbox/venv/bin/ocr-inbox",
        "run",
        "--config",
        "/etc/ocr-inbox/settings.toml",
        "--state-dir",
        "/var/lib/ocr-inbox",
    ]
    assert only(service, "User") == "ocr-inbox"
    assert only(service, "Group") == "ocr-inbox"
    assert only(service, "StateDirectory") == "ocr-inbox"


def test_cuda_keeps_working(service: dict[str, list[str]]) -> None:
    """The NVIDIA devices are allowed and the settings that break CUDA stay off."""
    assert only(service, "DevicePolicy") == "closed"
    assert any(value.startswith("char-nvidia") for value in service["DeviceAllow"])
    assert only(service, "PrivateDevices") == "no"
    assert only(service, "MemoryDenyWriteExecute") == "no"
    assert "ProcSubset" not in service


def test_hardening_directives(service: dict[str, list[str]]) -> None:
    """The filesystem is read-only but for the inbox root, and privileges are dropped."""
    assert only(service, "ProtectSystem") == "strict"
    assert only(service, "WorkingDirectory") in only(service, "ReadWritePaths").split()
    assert only(service, "CapabilityBoundingSet") == ""
    assert only(service, "AmbientCapabilities") == ""
    assert "@system-service" in service["SystemCallFilter"]
    for key in ("PrivateTmp", "NoNewPrivileges", "ProtectKernelTunables", "RestrictNamespaces"):
        assert only(service, key) == "yes", key


def test_models_load_offline_from_state(service: dict[str, list[str]]) -> None:
    """Hugging Face runs offline with its cache in the state directory; stdout is unbuffered."""
    environment = dict(value.split("=", 1) for value in service["Environment"])
    assert environment["HF_HUB_OFFLINE"] == "1"
    assert environment["HF_HOME"].startswith("/var/lib/ocr-inbox/")
    assert environment["PYTHONUNBUFFERED"] == "1"
