"""Fixtures every test module may ask for by name."""

from tests.support.tiny_model_fixtures import tiny_models_root  # noqa: F401  (a fixture, used by name)
