"""The generic family: any image-text-to-text model through its chat template."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from harness.tiny_models import tiny_model


def test_family_setting_overrides_recognition(tiny_models_root: Path) -> None:
    """family = "generic" runs a Qwen2-VL folder with the generic prompt and no Qwen extras."""
    folder = tiny_model("qwen2_vl", tiny_models_root)
    settings = HfVlmModel(path=str(folder), family="generic", max_new_tokens=3)
    engine = HfVlmEngine("any", settings, Runtime(device="cpu"))
    info = engine.load()
    assert info.family == "generic"
    assert info.details["mode"] == "plain"
    (result,) = engine.recognize([Image.new("RGB", (120, 80), "white")])
    assert result.tokens is not None and 1 <= result.tokens <= 3
    assert "model_image_size" not in result.details  # the generic family does not know it
    engine.close()
