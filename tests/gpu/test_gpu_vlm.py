"""hf_vlm on a real GPU with a tiny model: bf16 where supported, sdpa, memory readings.

Skipped on machines without CUDA (the CI machines). Run on a GPU machine with:
    pytest tests/gpu -m gpu
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker import hardware
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from harness.tiny_models import tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GPU = Runtime(device="auto")


def expected_dtype() -> str:
    return "bfloat16" if torch.cuda.get_device_capability(0)[0] >= 8 else "float16"


@pytest.fixture(scope="module")
def gpu_engine(tiny_models_root: Path) -> Iterator[HfVlmEngine]:
    folder = tiny_model("qwen2_vl", tiny_models_root)
    settings = HfVlmModel(path=str(folder), max_new_tokens=8, batch_size=2, attention="sdpa")
    engine = HfVlmEngine("tiny-gpu", settings, GPU)
    engine.load()
    yield engine
    engine.close()


def test_auto_settings_pick_the_gpu_bf16_and_a_working_attention(
    tiny_models_root: Path,
) -> None:
    """dtype/attention auto: cuda:0, bf16 on sm_80+ (else fp16); SDPA when flash-attn is absent, its forward pass passing."""
    folder = tiny_model("qwen2_vl", tiny_models_root)
    engine = HfVlmEngine("auto", HfVlmModel(path=str(folder), max_new_tokens=4), GPU)
    info = engine.load()
    assert info.device == "cuda:0"
    assert info.dtype == expected_dtype()
    flash_probe = hardware.flash_attn_probe(torch.device("cuda", 0))
    assert info.attention == ("flash_attention_2" if flash_probe.ok else "sdpa")
    fallbacks = info.details["attention_fallbacks"]
    if importlib.util.find_spec("flash_attn") is None:
        # flash-attn is not installed: ruled out before loading, and the load-time
        # forward pass with SDPA passed (a failing one would be listed here too).
        assert not flash_probe.ok and "does not import" in flash_probe.reason
        assert fallbacks == [f"flash_attention_2: {flash_probe.reason}"]
    assert not any(reason.startswith("sdpa") for reason in fallbacks)
    assert engine.recognize([Image.new("RGB", (300, 400), "white")])[0].tokens
    engine.close()


def test_sdpa_in_bf16_answers_batched_pages(gpu_engine: HfVlmEngine) -> None:
    """attention = sdpa on the GPU: loads as asked and answers a 3-page call in 2 batches."""
    info = gpu_engine.info
    assert info is not None
    assert (info.device, info.dtype, info.attention) == ("cuda:0", expected_dtype(), "sdpa")
    results = gpu_engine.recognize([Image.new("RGB", (500, 700), "white")] * 3)
    assert len(results) == 3
    assert [result.details["batch_pages"] for result in results] == [2, 2, 1]
    assert all(result.tokens is not None and 1 <= result.tokens <= 8 for result in results)


def test_memory_readings_after_a_job(gpu_engine: HfVlmEngine) -> None:
    """Allocated, reserved and peak come from torch; used/total from NVML when it is there."""
    gpu_engine.reset_peak()
    gpu_engine.recognize([Image.new("RGB", (500, 700), "white")])
    (reading,) = gpu_engine.memory()
    assert reading.device == 0
    assert 0 < reading.allocated_bytes <= reading.reserved_bytes
    assert reading.peak_bytes >= reading.allocated_bytes
    if hardware.nvml_readings()[0]:
        assert reading.nvml_total_bytes and 0 < reading.nvml_used_bytes <= reading.nvml_total_bytes
    gpu_engine.free_memory()


def test_gpu_facts_for_doctor() -> None:
    """The GPU's capability is known, torch has kernels for it, and some SDPA backend runs."""
    info = hardware.gpu_info(0)
    assert info.capability.count(".") == 1 and info.total_memory_bytes > 0
    assert info.arch_supported
    probes = hardware.sdpa_backends(torch.device("cuda", 0))
    assert probes["math"].ok
    if torch.cuda.get_device_capability(0)[0] >= 8:
        assert probes["flash"].ok or probes["mem_efficient"].ok
    assert hardware.context_usable(torch.device("cuda", 0))
