"""A real OpenAI-compatible inference server as a subprocess: `transformers serve`.

transformers' own server (its `serving` extra) serves a model folder on CPU;
tests and the `remote` benchmark start it once on a free loopback port,
with the model preloaded, and may kill it and start it again on the same port
(a server that went down and came back). The served model's name is the
folder's path, as `transformers serve` names a model given by path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.fake_server import _free_port


class TransformersServer:
    def __init__(
        self, model: Path, log: Path, port: int | None = None, cpus: set[int] | None = None
    ) -> None:
        self.model = model
        self.log = log
        self.port = port or _free_port()
        self.cpus = cpus  # the cores it may use (a benchmark keeps its client off them)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def served_model(self) -> str:
        return str(self.model)

    def start(self, timeout: float = 300.0) -> TransformersServer:
        """Start it and wait until /v1/models lists the model (loading takes a few seconds)."""
        command = [
            str(Path(sys.executable).with_name("transformers")),
            "serve",
            str(self.model),
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=self._pin if self.cpus else None,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited ({self.process.returncode}):\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"transformers serve did not answer within {timeout} s")
            time.sleep(0.25)
        return self

    def _pin(self) -> None:
        """In the child before exec: only the cores it was given."""
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/models", timeout=2) as response:
                data = json.load(response).get("data") or []
        except (OSError, ValueError):
            return False
        return any(entry.get("id") == self.served_model for entry in data)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would end it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
