"""Engine registry: names in the settings map to classes imported lazily in the worker.

Only the engine a model asks for is imported, in the worker that runs it: the
registry itself imports nothing heavy, so the supervisor may read it and a
worker running the embedded engine never imports torch (the base install has
none). An engine whose packages are missing says which extra brings them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from daemon.extras import ENGINE_EXTRAS, install_hint
from daemon.worker.engines.base import Engine, EngineError, Runtime

# Import paths, not classes: the supervisor may read this table without
# importing torch, onnxruntime or transformers.
ENGINES: dict[str, str] = {
    "rapid": "daemon.worker.engines.rapid:RapidEngine",
    "hf_vlm": "daemon.worker.engines.hf_vlm:HfVlmEngine",
    "openai": "daemon.worker.engines.remote:OpenAiEngine",
    "faulty": "daemon.worker.engines.faulty:FaultyEngine",
}


class MissingExtraError(EngineError):
    """An engine's packages are not installed: the message names the extra that brings them."""


def engine_class(engine: str) -> Callable[[str, Any, Runtime], Engine]:
    """Import the module of `engine` (and nothing else) and return its class."""
    module_name, _, class_name = ENGINES[engine].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        extra = ENGINE_EXTRAS.get(engine)
        if extra is None or (error.name or "").startswith("daemon"):
            raise
        raise MissingExtraError(
            f"the {engine} engine needs {error.name!r}, which is not installed: "
            + install_hint(extra)
        ) from error
    found: Callable[[str, Any, Runtime], Engine] = getattr(module, class_name)
    return found


def build_engine(name: str, model: Any, runtime: Runtime) -> Engine:
    """Instantiate the engine class for `model.engine` (not yet loaded)."""
    return engine_class(model.engine)(name, model, runtime)
