"""The daemon with a tiny VLM on a CUDA GPU: auto settings, the record, and GPU memory on /metrics.

The worker loads the model with dtype and attention `auto`; the outputs and
`active_model_info` must say bf16 (on sm_80 and newer) and the attention that
ran, and the worker's torch allocator readings and NVML's device readings
must reach /metrics.

Skipped on machines without CUDA (the CI machines). Run on a GPU machine with:
    pytest tests/gpu/test_gpu_daemon.py -m gpu
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from harness.driver import base_settings, outputs_of, read_json, running_daemon
from harness.drops import drop_png
from harness.tiny_models import tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_vlm_on_the_gpu_reports_bf16_its_attention_and_memory_on_metrics(
    tmp_path: Path, tiny_models_root: Path
) -> None:
    """A file done on cuda:0 in bf16; active_model_info, torch and NVML memory gauges on /metrics."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "brief")
    inbox = tmp_path / "inbox"
    settings = base_settings(
        inbox, tmp_path / "state", worker={"chain": ["tiny"], "device": "cuda"}
    )
    settings["models"] = {"tiny": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 16}}
    expected_dtype = "bfloat16" if torch.cuda.get_device_capability(0)[0] >= 8 else "float16"
    flash_installed = importlib.util.find_spec("flash_attn") is not None
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        [loaded] = daemon.wait_for("model.loaded", model="tiny", timeout=300)
        assert (loaded["device"], loaded["dtype"]) == ("cuda:0", expected_dtype)
        if not flash_installed:
            assert loaded["attention"] == "sdpa"
        page = drop_png(inbox / "page-1.png", seed=1)
        daemon.wait_for("file.done", file=str(page), timeout=300)
        info = {
            "model": "tiny",
            "engine": "hf_vlm",
            "device": "cuda:0",
            "dtype": expected_dtype,
            "attention": loaded["attention"],
        }
        assert daemon.metric("ocr_inbox_active_model_info", **info) == 1
        allocated = daemon.metric("ocr_inbox_gpu_memory_allocated_bytes", device="0")
        reserved = daemon.metric("ocr_inbox_gpu_memory_reserved_bytes", device="0")
        peak = daemon.metric("ocr_inbox_gpu_memory_peak_bytes", device="0")
        used = daemon.metric("ocr_inbox_gpu_memory_used_bytes", device="0")
        total = daemon.metric("ocr_inbox_gpu_memory_total_bytes", device="0")
    assert 0 < allocated <= reserved
    assert peak >= allocated
    # NVML (nvidia-ml-py, in the vlm extra) sees the whole device: at least this worker's share.
    assert total > 0 and reserved <= used <= total
    document = read_json(outputs_of(page)["json"])
    model = document["model"]
    assert (model["device"], model["dtype"], model["attention"]) == (
        "cuda:0",
        expected_dtype,
        loaded["attention"],
    )
    [reading] = document["memory"]
    assert reading["device"] == 0 and reading["nvml_total_bytes"] == total


def test_all_gives_each_gpu_a_pinned_worker_labelled_by_its_gpu(
    tmp_path: Path, tiny_models_root: Path
) -> None:
    """device "all": one worker per GPU, each loads on the cuda:0 it sees; worker_info and the
    memory of the worker that did the file carry that GPU's own number."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "brief")
    inbox = tmp_path / "inbox"
    settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["tiny"], "device": "all"})
    settings["models"] = {"tiny": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 16}}
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = (
        [entry.strip() for entry in inherited.split(",")]
        if inherited
        else [str(index) for index in range(torch.cuda.device_count())]
    )
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        loaded = daemon.wait_for("model.loaded", model="tiny", count=len(gpus), timeout=300)
        assert {line["device"] for line in loaded} == {"cuda:0"}
        assert sorted(line["cuda_visible_devices"] for line in loaded) == sorted(gpus)
        for slot, gpu in enumerate(gpus):
            labels = {"worker": str(slot), "device": f"cuda:{slot}", "cuda_visible_devices": gpu}
            assert daemon.metric("ocr_inbox_worker_info", model="tiny", **labels) == 1
        page = drop_png(inbox / "page-1.png", seed=2)
        daemon.wait_for("file.done", file=str(page), timeout=300)
        [dispatched] = daemon.find("file.dispatched", file=str(page))
        gpu = gpus[int(dispatched["slot"])]
        assert daemon.metric("ocr_inbox_gpu_memory_allocated_bytes", device=gpu) > 0
    [reading] = read_json(outputs_of(page)["json"])["memory"]
    assert str(reading["device"]) == gpu
