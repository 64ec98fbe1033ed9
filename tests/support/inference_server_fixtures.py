"""The real inference server, started once per test run and shared (it takes seconds to load)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.inference_server import TransformersServer
from harness.tiny_models import tiny_model


@pytest.fixture(scope="session")
def transformers_server(tiny_models_root: Path) -> Iterator[TransformersServer]:
    """`transformers serve` with the tests' tiny Qwen2-VL on CPU, on a free loopback port.

    A test that kills it starts it again before it ends, so the next finds it up.
    transformers[serving] is in the test extra: without it this fails, not skips.
    """
    model = tiny_model("qwen2_vl", tiny_models_root, "brief")
    server = TransformersServer(model, tiny_models_root / "transformers-serve.log").start()
    try:
        yield server
    finally:
        server.kill()
