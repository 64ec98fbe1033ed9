"""A real device-side assert inside the worker, on a CUDA GPU: recovered, and the next file done.

The fault-injection engine's `cuda_assert_real` fault indexes past the end of a
table on the GPU (as a VLM does with a token id beyond its vocabulary): the
index kernel's bounds check is a device-side assert, which poisons the worker's
CUDA context. The daemon must replace the worker and carry on. The recovery
time (from the worker's fault report to the fresh worker's model.loaded, and
to the next file done) is printed and recorded as test properties.

Skipped on machines without CUDA (the CI machines). Run on a GPU machine with:
    pytest tests/gpu/test_cuda_assert.py -m gpu -s
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from harness.driver import (
    base_settings,
    outputs_of,
    read_json,
    record_time,
    running_daemon,
)
from harness.drops import drop_png

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_device_side_assert_is_recovered_and_the_next_file_processed(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The asserting worker exits 3 and is replaced; its file moves on; the next files are done."""
    inbox = tmp_path / "inbox"
    settings = base_settings(
        inbox,
        tmp_path / "state",
        worker={"chain": ["gpu", "steady"], "device": "cuda"},
        # One loss moves the asserting file to "steady" at once; generous K keeps "gpu" active.
        recovery={"attempts_per_model": 1, "max_fatal_failures": 10},
    )
    settings["models"] = {
        "gpu": {"engine": "faulty", "rules": [{"match": "assert-*", "fault": "cuda_assert_real"}]},
        "steady": {"engine": "faulty"},
    }
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        poisoned = drop_png(inbox / "assert-1.png", seed=1)
        [failed] = daemon.wait_for("worker.job_failed", fault="cuda_fatal", timeout=300)
        assert "device-side assert triggered" in failed["error"]
        assert failed["fatal"] is True
        [exited] = daemon.wait_for("worker.exited", slot="0", timeout=120)
        assert (exited["exit_code"], exited["reason"]) == (3, "cuda_fatal")
        reloaded = daemon.wait_for("model.loaded", slot="0", model="gpu", count=2, timeout=300)[1]
        assert daemon.wait_for("file.done", file=str(poisoned))[0]["model"] == "steady"
        following = drop_png(inbox / "next-1.png", seed=2)
        done = daemon.wait_for("file.done", file=str(following), timeout=300)[0]
        assert done["model"] == "gpu"
        # The fresh worker has a working CUDA context: a second assert is again
        # a proper device-side assert, not an error from a broken context.
        again = drop_png(inbox / "assert-2.png", seed=3)
        second = daemon.wait_for("worker.job_failed", fault="cuda_fatal", count=2, timeout=300)[1]
        assert "device-side assert triggered" in second["error"]
        daemon.wait_for("file.done", file=str(again), timeout=300)
    to_worker = record_time(reloaded) - record_time(failed)
    to_next_file = record_time(done) - record_time(failed)
    record_property("recovery_to_model_loaded_seconds", round(to_worker, 3))
    record_property("recovery_to_next_file_seconds", round(to_next_file, 3))
    print(
        f"\ndevice-side assert recovery on {torch.cuda.get_device_name(0)}: "
        f"fresh worker loaded after {to_worker:.2f} s; "
        f"next file done {to_next_file:.2f} s after the fault"
    )
    trail = read_json(outputs_of(poisoned)["json"])["fallback_trail"]
    assert [(step["model"], step["outcome"]) for step in trail] == [("gpu", "cuda_fatal")]
