"""Engine registry: names in the settings map to classes imported lazily in the worker."""

from __future__ import annotations

import importlib
from typing import Any

from daemon.worker.engines.base import Engine, Runtime

# Import paths, not classes: the supervisor may read this table without
# importing torch, onnxruntime or transformers.
ENGINES: dict[str, str] = {
    "rapid": "daemon.worker.engines.rapid:RapidEngine",
    "hf_vlm": "daemon.worker.engines.hf_vlm:HfVlmEngine",
    "faulty": "daemon.worker.engines.faulty:FaultyEngine",
}


def build_engine(name: str, model: Any, runtime: Runtime) -> Engine:
    """Instantiate the engine class for `model.engine` (not yet loaded)."""
    module_name, _, class_name = ENGINES[model.engine].partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = engine_class(name, model, runtime)
    return engine
