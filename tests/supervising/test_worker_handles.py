"""WorkerHandle's helpers: the config a worker is started with, and the memory check after a job."""

from __future__ import annotations

import time

from daemon.settings import FaultyModel, Settings
from daemon.supervising.pool import WorkerPool
from daemon.supervising.worker_handles import worker_config
from tests.support.workers import drill_config


def test_worker_config_carries_the_settings_the_worker_needs() -> None:
    """The named model's settings, limits, device, threads, OOM policy and log level reach the worker."""
    settings = Settings.model_validate(
        {
            "models": {"drill": {"engine": "faulty", "page_seconds": 0.5}},
            "worker": {"chain": ["drill", "rapid"], "device": "cpu", "threads": 3},
            "recovery": {"oom_retries": 4, "oom_scale": 0.5},
            "limits": {"max_pages": 7},
            "log": {"level": "debug", "format": "json"},
        }
    )
    made = worker_config(settings, 12, "drill")
    assert made.worker_id == 12
    assert made.model_name == "drill"
    assert made.model == settings.models["drill"]
    assert made.limits.max_pages == 7
    assert (made.device, made.threads) == ("cpu", 3)
    assert (made.oom_retries, made.oom_scale) == (4, 0.5)
    assert (made.log_level, made.log_format) == ("debug", "json")
    assert worker_config(settings, 13, "rapid").model.engine == "rapid"  # a built-in


def test_auto_log_format_is_decided_for_the_worker() -> None:
    """log.format auto becomes json or console before the worker starts (its stdout is ours)."""
    made = worker_config(Settings.model_validate({"log": {"format": "auto"}}), 1, "rapid")
    assert made.log_format in ("json", "console")


def test_over_memory_compares_a_live_worker_with_the_limit() -> None:
    """A real worker is over a 1 MiB limit, not over a 100 GiB one, and 0 means no limit."""
    pool = WorkerPool(backoff_cap=30, grace=1, clock=time.monotonic)
    worker = pool.spawn("0", drill_config(FaultyModel()), generation=0, load_deadline=60)
    try:
        assert worker.conn.poll(60)  # loaded
        assert worker.over_memory(1)
        assert not worker.over_memory(100 * 1024)
        assert not worker.over_memory(0)
    finally:
        pool.shutdown(immediately=True)
    assert not worker.over_memory(1)  # gone: nothing to measure
