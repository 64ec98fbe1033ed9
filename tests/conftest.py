"""Fixtures every test module may ask for by name."""

from tests.support.inference_server_fixtures import transformers_server  # noqa: F401
from tests.support.tiny_model_fixtures import tiny_models_root  # noqa: F401  (a fixture, used by name)
