"""A real out-of-memory error on a CUDA GPU: retried smaller in the same worker, the file done.

The fault-injection engine's `oom_real` fault asks the GPU's caching
allocator for twice the card's memory at the document's full size (a real
torch.OutOfMemoryError), and runs a small real computation once the worker has
shrunk the page. Out of memory is the one CUDA error that leaves the context
usable, so the worker must retry in place: no restart, no fallback.

Skipped on machines without CUDA (the CI machines). Run on a GPU machine with:
    pytest tests/gpu/test_cuda_oom.py -m gpu
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.driver import base_settings, outputs_of, read_json, running_daemon
from harness.drops import drop_png

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_real_oom_is_retried_smaller_in_the_same_worker(tmp_path: Path) -> None:
    """The page OOMs for real at full size, is done at 0.7 in the same worker; the OOM is counted."""
    inbox = tmp_path / "inbox"
    settings = base_settings(
        inbox,
        tmp_path / "state",
        worker={"chain": ["gpu"], "device": "cuda"},
    )
    settings["models"] = {
        "gpu": {"engine": "faulty", "rules": [{"match": "big-*", "fault": "oom_real"}]}
    }
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        [loaded] = daemon.wait_for("model.loaded", slot="0", model="gpu", timeout=300)
        big = drop_png(inbox / "big-1.png", seed=1)
        [oom] = daemon.wait_for("worker.oom", timeout=300)
        assert "CUDA out of memory" in oom["error"]
        [done] = daemon.wait_for("file.done", file=str(big), timeout=300)
        assert done["model"] == "gpu" and done["fallbacks"] == 0
        retries = daemon.find("worker.oom_retry")
        assert [retry["pid"] for retry in retries] == [oom["pid"]]
        assert not daemon.find("worker.exited")
        assert daemon.find("model.loaded") == [loaded]
        assert daemon.metric("ocr_inbox_cuda_errors_total", kind="oom") == 1
        assert daemon.metric("ocr_inbox_worker_restarts_total", reason="cuda_fatal") == 0
    [page] = read_json(outputs_of(big)["json"])["pages"]
    assert page["scale"] == pytest.approx(0.7)
    assert page["notes"] == ["out of memory: recognised at 0.70 of the page size"]
