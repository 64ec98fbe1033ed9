"""Webhook URLs: which one an inbox uses, credentials sent as Basic auth, never shown in a log."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from daemon.settings import Settings, SettingsError, load_settings
from daemon.webhooks.urls import redact_url, webhook_url_for, without_credentials


def test_the_outputs_url_serves_every_inbox() -> None:
    """[outputs] webhook_url is the URL of every inbox; without it no inbox has one."""
    settings = Settings(outputs={"webhook_url": "https://hooks.example.com/done"})

    assert webhook_url_for(settings, "invoices") == "https://hooks.example.com/done"
    assert webhook_url_for(settings, "letters") == "https://hooks.example.com/done"
    assert webhook_url_for(Settings(), "invoices") is None


def test_an_inboxs_own_url_comes_before_the_outputs_url(tmp_path: Path) -> None:
    """[inboxes.NAME] webhook_url serves that inbox; the others keep [outputs] webhook_url."""
    settings = Settings(
        outputs={"webhook_url": "https://hooks.example.com/done"},
        inboxes={
            "invoices": {"path": tmp_path / "invoices", "webhook_url": "https://erp.example/ocr"},
            "letters": {"path": tmp_path / "letters"},
        },
    )

    assert webhook_url_for(settings, "invoices") == "https://erp.example/ocr"
    assert webhook_url_for(settings, "letters") == "https://hooks.example.com/done"


def test_an_inboxs_url_must_be_http() -> None:
    """An inbox table's webhook_url is checked as [outputs] webhook_url is."""
    with pytest.raises(ValueError, match="must start with http"):
        Settings(inboxes={"x": {"path": "/srv/x", "webhook_url": "ftp://h/x"}})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bob:s3cret@hooks.example.com/x?y=1", "https://bob:***@hooks.example.com/x?y=1"),
        ("http://bob@h:8080/x", "http://bob@h:8080/x"),
        ("http://:tok@h/x", "http://:***@h/x"),
        ("http://h/x", "http://h/x"),
    ],
)
def test_redaction_hides_the_password_only(url: str, shown: str) -> None:
    """A log line shows the URL with its password replaced by ***, the rest as it is."""
    assert redact_url(url) == shown


def test_credentials_become_a_basic_authorization_header() -> None:
    """user:password@ is taken out of the URL and sent as HTTP Basic auth, percent-decoded."""
    url, header = without_credentials("https://bob:p%40ss@hooks.example.com:8443/x")

    assert url == "https://hooks.example.com:8443/x"
    assert header == "Basic " + base64.b64encode(b"bob:p@ss").decode()
    assert without_credentials("http://h/x") == ("http://h/x", None)


@pytest.mark.parametrize(
    "url", ["ftp://h/x", "hooks.example.com/x", "http:///x", "http://h:port/x"]
)
def test_settings_refuse_a_url_that_is_not_http(tmp_path: Path, url: str) -> None:
    """A webhook_url that is not http(s) with a host stops the daemon at start, naming the key."""
    config = tmp_path / "s.toml"
    config.write_text(f'[outputs]\nwebhook_url = "{url}"\n')

    with pytest.raises(SettingsError, match=r"outputs\.webhook_url"):
        load_settings(config)


def test_a_refused_url_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    """The settings error names the key but not the URL, which may hold a password."""
    config = tmp_path / "s.toml"
    config.write_text('[outputs]\nwebhook_url = "gopher://bob:s3cret@h/x"\n')

    with pytest.raises(SettingsError) as raised:
        load_settings(config)
    assert "s3cret" not in str(raised.value)


def test_an_empty_url_means_none() -> None:
    """webhook_url = "" (an environment variable set empty, say) sends no webhooks."""
    assert Settings(outputs={"webhook_url": ""}).outputs.webhook_url is None
