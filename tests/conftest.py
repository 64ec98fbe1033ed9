"""Fixtures every test module may ask for by name."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from harness.postgres_cluster import (
    Cluster,
    ClusterUnavailable,
    shared_cluster,
    start_cluster,
    stop_shared_cluster,
)
from tests.support.inference_server_fixtures import transformers_server  # noqa: F401
from tests.support.tiny_model_fixtures import tiny_models_root  # noqa: F401  (a fixture, used by name)
from tests.support.tools import unavailable

# Made by the controlling pytest process before xdist's workers start; they
# inherit it, so the whole run shares one PostgreSQL cluster.
PG_RUN_ENV = "PYTEST_OCR_INBOX_PG_RUN"


# The run folder this process made, if it made one. A pytest started by a
# test (the GPU check runs one) inherits the variable and must neither make
# its own folder nor stop the outer run's cluster when it ends.
_made_here: list[Path] = []


# The test files that take longest (serial seconds in a full run on the 2-core
# machine, from --durations), run first. With --no-loadscope-reorder (the
# Makefile) xdist hands files to its workers in collection order; its default
# order (most tests first) left these long files of few tests for the end,
# where one kept a worker busy while the others had finished. Longest first
# keeps the workers evenly busy to the end.
LONGEST_FIRST = (
    "tests/bench/test_parts.py",  # about 370 s
    "tests/e2e/test_vlm.py",  # about 300 s
    "tests/e2e/test_hostile_many_files.py",  # 110-175 s
    "tests/scripts/test_gpu_check.py",  # about 100 s
    "tests/packaging/test_base_install.py",  # about 90 s
    "tests/scripts/test_gpu_wheelhouse.py",  # about 80 s
    "tests/e2e/test_lifecycle.py",
    "tests/e2e/test_chaos.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first, each file's tests in their own order."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the others, stays


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and PG_RUN_ENV not in os.environ:
        run_dir = Path(tempfile.mkdtemp(prefix="ocr-inbox-pg-run-"))
        os.environ[PG_RUN_ENV] = str(run_dir)
        _made_here.append(run_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    for run_dir in _made_here:
        stop_shared_cluster(run_dir)
        os.environ.pop(PG_RUN_ENV, None)
    _made_here.clear()


@pytest.fixture(scope="session")
def postgres_cluster() -> Cluster:
    """The run's one throwaway PostgreSQL cluster (skips without the server, fails under REQUIRE_SYSTEM_TOOLS=1)."""
    try:
        return shared_cluster(Path(os.environ[PG_RUN_ENV]))
    except ClusterUnavailable as error:
        unavailable(str(error))


_databases = itertools.count()


@pytest.fixture
def pg_url(postgres_cluster: Cluster) -> str:
    """A fresh, empty database in the run's cluster; its URL (the daemon's role and password)."""
    return postgres_cluster.new_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def own_cluster(postgres_cluster: Cluster) -> Iterator[Cluster]:
    """A cluster of this test's own, to stop and start: the run's shared one serves tests beside it."""
    cluster = start_cluster()  # another folder, another free port
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """Put structlog's configuration back after each test.

    A test that calls `daemon.cli.main` in-process has logs.configure bind the
    logger to pytest's captured stdout, which is closed once that test ends;
    the next test in the same process would log into a closed file.
    """
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
