"""The engine registry imports only the engine a model asks for, and names the extra a missing one needs.

Each test runs in a fresh interpreter, so what is in sys.modules afterwards
is what that code path imported, not what other tests left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from harness.driver import REPO, daemon_env


def _run(code: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(found, dict)
    return found


def test_a_rapid_worker_never_imports_torch() -> None:
    """The worker's modules, the registry and a loaded rapid engine reading a page leave torch out."""
    report = _run(
        """
        import json, sys
        from PIL import Image
        import daemon.worker, daemon.worker.main
        from daemon.settings import RapidModel
        from daemon.worker.engines import build_engine
        from daemon.worker.engines.base import Runtime
        engine = build_engine("rapid", RapidModel(), Runtime(device="auto"))
        engine.load()
        engine.recognize([Image.new("RGB", (200, 100), "white")])
        heavy = ("torch", "transformers", "torchvision", "accelerate", "pynvml",
                 "daemon.worker.engines.hf_vlm", "daemon.worker.hardware")
        print(json.dumps({"imported": sorted(m for m in heavy if m in sys.modules)}))
        """
    )
    assert report == {"imported": []}


def test_an_engine_whose_packages_are_missing_names_the_extra() -> None:
    """With torch not importable, asking for hf_vlm says to install ocr-inbox[vlm], as an engine error."""
    report = _run(
        """
        import json, sys
        sys.modules["torch"] = None  # what a base install without the vlm extra looks like
        from daemon.settings import HfVlmModel
        from daemon.worker import faults
        from daemon.worker.engines import MissingExtraError, build_engine
        from daemon.worker.engines.base import EngineError, Runtime
        try:
            build_engine("vlm", HfVlmModel(path="/nowhere"), Runtime())
        except MissingExtraError as error:
            fault = faults.describe(error)
            print(json.dumps({"message": str(error), "kind": fault.kind,
                              "engine_error": isinstance(error, EngineError)}))
        """
    )
    assert report["engine_error"] is True
    assert report["kind"] == "engine_error"
    message = str(report["message"])
    assert "'torch'" in message and "pip install 'ocr-inbox[vlm]'" in message
