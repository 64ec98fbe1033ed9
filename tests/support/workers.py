"""The WorkerConfig of a fault-injection worker, for tests that start workers themselves."""

from __future__ import annotations

from typing import Any

from daemon.protocol import WorkerConfig
from daemon.settings import FaultyModel, LimitsSettings


def drill_config(
    model: FaultyModel, *, worker_id: int = 1, log_level: str = "error", **extra: Any
) -> WorkerConfig:
    """A worker running the `faulty` engine (on the CPU whatever `device` says) as model "drill", JSON logs."""
    return WorkerConfig(
        worker_id=worker_id,
        model_name="drill",
        model=model,
        limits=LimitsSettings(),
        log_level=log_level,
        log_format="json",
        **{"device": "cpu", **extra},
    )
