"""Settings: the TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from daemon.settings import OpenAiModel, Settings, SettingsError, load_settings
from harness.driver import run_cli
from tests.support.terminal import run_cli_on_terminal

REPO = Path(__file__).resolve().parents[1]


def startup_error(result: subprocess.CompletedProcess[str]) -> str:
    """The message of the one JSON record a start-up error writes when stdout is no terminal."""
    [line] = result.stdout.strip().splitlines()
    record = json.loads(line)
    assert (record["event"], record["level"]) == ("settings.invalid", "error")
    return str(record["message"])


def test_repo_settings_file_matches_the_defaults() -> None:
    """The documented settings.toml states exactly the built-in defaults."""
    from_file, path = load_settings(REPO / "settings.toml")
    defaults = Settings()
    assert path == REPO / "settings.toml"
    for section in ("watch", "state", "limits", "worker", "recovery", "outputs", "metrics", "log"):
        assert getattr(from_file, section) == getattr(defaults, section), section


def test_repo_settings_file_shows_the_server_model_defaults() -> None:
    """The commented [models.served] example states the openai engine's defaults beside its two required keys."""
    from_file, _ = load_settings(REPO / "settings.toml")
    served = from_file.models["served"]
    assert isinstance(served, OpenAiModel)
    assert served == OpenAiModel(base_url=served.base_url, model=served.model)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OCR_INBOX_<SECTION>__<KEY> beats the TOML file; the file beats the defaults."""
    config = tmp_path / "s.toml"
    config.write_text("[watch]\nsettle_seconds = 7\nrecursive = true\n")
    monkeypatch.setenv("OCR_INBOX_WATCH__SETTLE_SECONDS", "1.5")
    monkeypatch.setenv("OCR_INBOX_WORKER__CHAIN", '["rapid"]')
    settings, _ = load_settings(config)
    assert settings.watch.settle_seconds == 1.5
    assert settings.watch.recursive is True
    assert settings.worker.chain == ["rapid"]


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, $OCR_INBOX_CONFIG names the file."""
    config = tmp_path / "elsewhere.toml"
    config.write_text("[limits]\npdf_dpi = 150\n")
    monkeypatch.setenv("OCR_INBOX_CONFIG", str(config))
    settings, path = load_settings(None)
    assert path == config
    assert settings.limits.pdf_dpi == 150


def test_command_line_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides passed by the CLI (--inbox, --state-dir) win over the environment."""
    monkeypatch.setenv("OCR_INBOX_STATE__DIR", "/from/env")
    settings, _ = load_settings(None, {"state": {"dir": "/from/cli"}})
    assert settings.state.dir == Path("/from/cli")


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[watch]\nsettle_secs = 2\n", "watch.settle_secs: unknown key"),
        ("[limits]\npdf_dpi = 5\n", "limits.pdf_dpi"),
        ('[worker]\nchain = ["nope"]\n', "worker.chain[0]: unknown model 'nope'"),
        ("[wacth]\ninboxes = []\n", "wacth: unknown key"),
        ('[models.q]\nengine = "hf_vlm"\n', "models.q.hf_vlm.path"),
        ('[models.q]\nengine = "teleport"\n', "models.q"),
        ("[watch\n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, toml: str, named: str) -> None:
    """Unknown keys, bad values and broken TOML raise SettingsError naming the key."""
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert named in str(caught.value)


def test_unknown_environment_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt OCR_INBOX_ variable inside a section is refused, not ignored."""
    monkeypatch.setenv("OCR_INBOX_WATCH__SETTLE", "3")
    with pytest.raises(SettingsError, match=r"watch\.settle: unknown key"):
        load_settings(None)


def test_daemon_exits_2_on_bad_settings(tmp_path: Path) -> None:
    """`ocr-inbox run` with a bad key stops at once with exit code 2 and names the key."""
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\nmax_pages = -3\n")
    result = run_cli("run", "--config", str(config), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    message = startup_error(result)
    assert "limits.max_pages: Input should be greater than 0" in message
    assert f"value -3, from {config}, [limits] max_pages" in message


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """An explicit --config that does not exist is a settings error (exit 2)."""
    result = run_cli(
        "once", "--config", str(tmp_path / "none.toml"), "x.png", cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert "settings file not found" in startup_error(result)


def test_inboxes_whose_names_clash_are_refused(tmp_path: Path) -> None:
    """Two inboxes named alike (same last folder) stop `run` with exit 2 and a message saying how to fix it."""
    with pytest.raises(SettingsError) as error:
        load_settings(None, {"watch": {"inboxes": ["/srv/a/scans", "/srv/b/scans"]}})
    message = str(error.value)
    assert "/srv/a/scans and /srv/b/scans would both be named 'scans'" in message
    assert "rename or move one of the folders" in message
    first, second = tmp_path / "a" / "scans", tmp_path / "b" / "scans"
    result = run_cli("run", "--inbox", str(first), "--inbox", str(second), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "would both be named 'scans'" in startup_error(result)
    assert not first.exists() and not second.exists()  # refused before anything was created


def test_inboxes_are_named_after_their_folder() -> None:
    """An inbox's name is its folder's last component; one folder listed twice is one inbox."""
    settings, _ = load_settings(
        None, {"watch": {"inboxes": ["/srv/scans", "/srv/scans/", "/srv/letters"]}}
    )
    assert settings.watch.named_inboxes() == {
        "scans": Path("/srv/scans"),
        "letters": Path("/srv/letters"),
    }


def test_bad_environment_value_names_the_variable_and_shows_it(tmp_path: Path) -> None:
    """OCR_INBOX_WATCH__SETTLE_SECONDS=abc: exit 2, the variable and its value named, not the file."""
    config = tmp_path / "settings.toml"
    config.write_text("[watch]\nsettle_seconds = 3\n")
    env = {"OCR_INBOX_WATCH__SETTLE_SECONDS": "abc"}
    result = run_cli("once", "--config", str(config), "x.png", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    message = startup_error(result)
    assert "watch.settle_seconds: Input should be a valid number" in message
    assert "value 'abc', from the environment variable OCR_INBOX_WATCH__SETTLE_SECONDS" in message
    assert str(config) not in message
    on_terminal = run_cli_on_terminal("once", "x.png", cwd=tmp_path, env=env, timeout=60)
    assert on_terminal.returncode == 2
    assert on_terminal.stderr.splitlines() == [
        "ocr-inbox: invalid settings:",
        "  watch.settle_seconds: Input should be a valid number, unable to parse string as a number",
        "      value 'abc', from the environment variable OCR_INBOX_WATCH__SETTLE_SECONDS",
    ]


def test_secrets_in_a_bad_value_are_redacted(tmp_path: Path) -> None:
    """A password in a URL and a secret-named key's value never reach the message."""
    env = {
        # Refused (not http): shown, with its password redacted.
        "OCR_INBOX_OUTPUTS__WEBHOOK_URL": "ftp://ocr:hunter2@db.example/hook",
        "OCR_INBOX_STATE__API_KEY": "sk-live-123",
    }
    result = run_cli("once", "x.png", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    assert "hunter2" not in result.stdout and "sk-live-123" not in result.stdout
    message = startup_error(result)
    assert "value 'ftp://ocr:<redacted>@db.example/hook'" in message
    assert "state.api_key: unknown key\n      value '<redacted>'" in message


def test_worker_device_takes_a_list_of_gpus_or_all(tmp_path: Path) -> None:
    """[worker] device is one device, "all", or a list of cuda:N; count 0 means one per GPU."""
    config = tmp_path / "gpus.toml"
    config.write_text('[worker]\ndevice = ["cuda:0", "cuda:1"]\n')
    settings, _ = load_settings(config)
    assert (settings.worker.device, settings.worker.count) == (["cuda:0", "cuda:1"], 0)
    settings, _ = load_settings(None, {"worker": {"device": "all"}})
    assert settings.worker.device == "all"


@pytest.mark.parametrize(
    ("device", "named"),
    [
        (["cuda:0", "cuda:0"], "worker.device: Value error, lists a GPU twice"),
        ([], "worker.device.list[constrained-str]: List should have at least 1 item"),
        (["cpu"], "String should match pattern '^cuda:\\d+$'"),
        ("gpu", "worker.device.constrained-str: String should match pattern"),
    ],
)
def test_bad_device_lists_are_refused(device: object, named: str) -> None:
    """A GPU listed twice, an empty list, a list entry that is no GPU, an unknown name: refused."""
    with pytest.raises(SettingsError) as caught:
        load_settings(None, {"worker": {"device": device}})
    assert named in str(caught.value)


def test_a_count_that_contradicts_the_device_list_exits_2(tmp_path: Path) -> None:
    """worker.count 3 with two listed GPUs: `run` exits 2 naming both keys and where count came from."""
    config = tmp_path / "settings.toml"
    config.write_text('[worker]\ndevice = ["cuda:0", "cuda:1"]\n')
    env = {"OCR_INBOX_WORKER__COUNT": "3"}
    result = run_cli("run", "--config", str(config), cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    message = startup_error(result)
    assert "worker.count: Value error, worker.count = 3 contradicts worker.device" in message
    assert "leave worker.count at 0 or set it to 2" in message
    assert "value '3', from the environment variable OCR_INBOX_WORKER__COUNT" in message


def test_all_with_every_gpu_hidden_exits_2(tmp_path: Path) -> None:
    """device "all" under CUDA_VISIBLE_DEVICES="" (no GPU visible): `run` exits 2 before any worker starts."""
    env = {"OCR_INBOX_WORKER__DEVICE": "all", "CUDA_VISIBLE_DEVICES": ""}
    result = run_cli("run", "--inbox", str(tmp_path / "in"), cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    assert 'worker.device = "all", but the daemon\'s CUDA_VISIBLE_DEVICES hides every GPU' in (
        startup_error(result)
    )
    assert not (tmp_path / "in").exists()  # refused before the inbox was created
