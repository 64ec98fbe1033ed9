"""Settings: one TOML file, overridable by OCR_INBOX_<SECTION>__<KEY> environment variables.

The models here are cheap to pickle: the supervisor hands them to spawned
workers, which import the heavy libraries themselves. The tables live in
`sections` (what every stage reads) and `models` (one class per engine);
`loading` builds the whole object and says where a bad value came from.
"""

from daemon.settings.inboxes import InboxProfile, InboxTable
from daemon.settings.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Settings,
    SettingsError,
    config_path,
    describe_origin,
    load_settings,
    read_toml,
)
from daemon.settings.models import (
    BUILTIN_MODELS,
    FaultRule,
    FaultyModel,
    HfVlmModel,
    KnownAnswer,
    KnownBlock,
    KnownLine,
    KnownWord,
    ModelSettings,
    OpenAiModel,
    RapidModel,
    Rectangle,
)
from daemon.settings.sections import (
    LimitsSettings,
    LogSettings,
    MetricsSettings,
    OutputFormat,
    OutputSettings,
    RecoverySettings,
    Section,
    StateSettings,
    WatchSettings,
    WorkerSettings,
    check_webhook_url,
    inbox_name,
    inbox_root,
)

__all__ = [
    "BUILTIN_MODELS",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "FaultRule",
    "FaultyModel",
    "HfVlmModel",
    "InboxProfile",
    "InboxTable",
    "KnownAnswer",
    "KnownBlock",
    "KnownLine",
    "KnownWord",
    "LimitsSettings",
    "LogSettings",
    "MetricsSettings",
    "ModelSettings",
    "OpenAiModel",
    "OutputFormat",
    "OutputSettings",
    "RapidModel",
    "RecoverySettings",
    "Rectangle",
    "Section",
    "Settings",
    "SettingsError",
    "StateSettings",
    "WatchSettings",
    "WorkerSettings",
    "check_webhook_url",
    "config_path",
    "describe_origin",
    "inbox_name",
    "inbox_root",
    "load_settings",
    "read_toml",
]
