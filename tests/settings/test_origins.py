"""Where a setting came from (option, environment, file key, defaults) and redaction of secrets."""

from __future__ import annotations

from pathlib import Path

from daemon.settings.origins import find_origin, key_of, redact


def test_option_beats_environment_beats_file_beats_defaults() -> None:
    """Each source is named only where it sets the key, in the order pydantic-settings applies."""
    file = Path("/etc/ocr-inbox/settings.toml")
    data = {"metrics": {"port": 1}, "watch": {"settle_seconds": 3}}
    environ = {"ocr_inbox_metrics__port": "2"}  # variable names are case-insensitive
    overrides = {"metrics": {"port": 3}}
    port = ("metrics", "port")
    described = [
        find_origin(port, overrides=o, environ=e, file=file, file_data=data).describe()
        for o, e in ((overrides, environ), ({}, environ), ({}, {}))
    ]
    assert described == [
        "the option --metrics-port",
        "the environment variable ocr_inbox_metrics__port",
        "/etc/ocr-inbox/settings.toml, [metrics] port",
    ]
    nowhere = find_origin(("log", "level"), overrides={}, environ={}, file=file, file_data=data)
    assert nowhere.describe() == "the defaults"


def test_a_model_tables_engine_tag_is_not_part_of_its_key() -> None:
    """pydantic's models.q.hf_vlm.path is the key models.q.path, found as [models.q] path."""
    key = key_of(("models", "q", "hf_vlm", "path"))
    assert key == ("models", "q", "path")
    data = {"models": {"q": {"engine": "hf_vlm", "path": 5}}}
    origin = find_origin(key, overrides={}, environ={}, file=Path("s.toml"), file_data=data)
    assert origin.describe() == "s.toml, [models.q] path"


def test_redaction_hides_url_passwords_and_secret_keys() -> None:
    """Passwords in URLs and values of password/token/api_key keys are hidden; the rest is kept."""
    assert redact(("journal", "url"), "postgresql://u:pw@h:5432/db") == (
        "postgresql://u:<redacted>@h:5432/db"
    )
    assert redact(("models", "m", "api_key"), "sk-1") == "<redacted>"
    assert redact(("journal",), {"password": "x", "host": "h"}) == {
        "password": "<redacted>",
        "host": "h",
    }
    assert redact(("metrics", "host"), "127.0.0.1") == "127.0.0.1"
