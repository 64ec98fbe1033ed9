"""Which URL a file's completion webhook goes to, and how a URL may be shown.

A URL may carry credentials (https://user:password@host/...): they are sent
as HTTP Basic authentication, never as part of the request line, and every
log line shows the URL through `redact_url`.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

from daemon.settings import Settings


def webhook_url_for(settings: Settings, inbox_name: str) -> str | None:
    """The URL that files of the inbox `inbox_name` announce their outcome to; None for none.

    An inbox's own `[inboxes.NAME] webhook_url` comes first; `[outputs]
    webhook_url` serves every inbox that has none. Read per file, so a SIGHUP
    that changes either takes effect with the next finished file.
    """
    profile = settings.profile_named(inbox_name)
    if profile is not None and profile.webhook_url is not None:
        return profile.webhook_url
    return settings.outputs.webhook_url


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, fit for a log line or a metric."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that cannot be parsed)"
    if password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(
        parts._replace(netloc=f"{user}:***@{host}" if password is not None else f"{user}@{host}")
    )


def without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user:password@, and the Authorization header they make (None without)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"
