"""Fixtures every test module may ask for by name."""

from collections.abc import Iterator

import pytest
import structlog

from tests.support.inference_server_fixtures import transformers_server  # noqa: F401
from tests.support.tiny_model_fixtures import tiny_models_root  # noqa: F401  (a fixture, used by name)


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
