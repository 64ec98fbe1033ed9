"""The steps of the GPU check after the install: GPU tests, a 2B model, `once` with it, the benchmark.

Each step takes the run's Context, its time limit and its Outcome (to add
notes to); it returns when it proved what it must, and raises StepFailed,
StepSkipped or TimeoutError otherwise. scripts/gpu_check.py runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from scripts.limited_run import Finished, events, json_lines, run, tail

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "qwen2-vl-2b-random"
MAX_NEW_TOKENS = 64
EMPTY_OUTCOMES = ("empty_output", "degenerate_output")  # docs/recovery.md
ATTENTIONS = ("flash_attention_2", "sdpa")


@dataclass
class Outcome:
    step: str
    result: str  # pass | fail | skip | timeout | not run
    seconds: float = 0.0
    limit: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    results: Path
    started: float
    python: str = ""
    facts: dict[str, object] = field(default_factory=dict)
    model: dict[str, object] = field(default_factory=dict)

    @property
    def cpu(self) -> bool:
        return bool(self.args.device == "cpu")

    def remaining(self) -> float:
        return float(self.args.budget) - (time.monotonic() - self.started)

    def log(self, step: str) -> Path:
        return self.results / "logs" / f"{step}.log"

    def run(
        self,
        step: str,
        command: list[str],
        limit: float,
        *,
        cwd: Path = REPO,
        checkout_on_path: bool = True,
    ) -> Finished:
        """Run a command of `step` under `limit`, logged to logs/STEP.log."""
        env = step_env(self, checkout_on_path=checkout_on_path)
        return run(command, limit=limit, log=self.log(step), cwd=cwd, env=env)


class StepFailed(Exception):
    """The step ran and did not prove what it must; the message says what."""


class StepSkipped(Exception):
    """The step could not run here or now; the message says why."""


def step_env(ctx: Context, *, checkout_on_path: bool = True) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCR_INBOX_")}
    env["HF_HUB_OFFLINE"] = "1"  # the machine has no network; nothing is fetched
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    if checkout_on_path:
        env["PYTHONPATH"] = str(REPO)
    if ctx.cpu:
        # The CPU run must not touch a GPU that happens to be there.
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def last_json_line(text: str) -> dict[str, object]:
    found = json_lines(text)
    if not found:
        raise StepFailed(f"no JSON line in the output:\n{tail(text)}")
    return found[-1]


def require_finished(finished: Finished, limit: float, what: str) -> None:
    if finished.code is None:
        raise TimeoutError(f"{what} did not finish within {limit:.0f} s")
    if finished.code != 0:
        raise StepFailed(f"{what} exited {finished.code}:\n{tail(finished.output)}")


def step_gpu_tests(ctx: Context, limit: float, outcome: Outcome) -> None:
    report = ctx.results / "gpu-tests.xml"
    command = [ctx.python, "-m", "pytest", "-m", "gpu", "tests/gpu", "-p", "no:cacheprovider"]
    # -s: the tests print their recovery times; --timeout: one hung test cannot eat the step.
    command += ["-q", "-s", "--timeout", str(int(max(limit - 10, 30))), f"--junitxml={report}"]
    finished = ctx.run("gpu-tests", command, limit)
    if finished.code is None:
        raise TimeoutError(f"pytest -m gpu did not finish within {limit:.0f} s")
    counts = junit_counts(report)
    outcome.notes.append(", ".join(f"{value} {key}" for key, value in counts.items()))
    if finished.code != 0 or counts["failed"] or counts["errors"]:
        raise StepFailed(f"pytest exited {finished.code}:\n{tail(finished.output, 25)}")
    if counts["passed"] == 0 and counts["skipped"] > 0:
        if ctx.cpu:
            raise StepSkipped(f"no GPU: all {counts['skipped']} GPU tests skipped")
        raise StepFailed("every GPU test skipped on the GPU machine")
    if counts["skipped"] and not ctx.cpu:
        raise StepFailed(f"{counts['skipped']} GPU test(s) skipped on the GPU machine")


def junit_counts(report: Path) -> dict[str, int]:
    if not report.is_file():
        raise StepFailed("pytest wrote no report")
    root = ElementTree.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {
        key: sum(int(suite.get(key, 0)) for suite in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }
    return {
        "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
    }


def step_model(ctx: Context, limit: float, outcome: Outcome) -> None:
    folder = ctx.work / "model"
    if folder.exists():
        shutil.rmtree(folder)
    command = [ctx.python, "-m", "bench.gpu_model", "--out", str(folder)]
    command += ["--device", "cpu", "--tiny"] if ctx.cpu else ["--device", "cuda"]
    finished = ctx.run("model", command, limit)
    require_finished(finished, limit, "bench.gpu_model")
    ctx.model = last_json_line(finished.output)
    (folder / "built.json").write_text(json.dumps(ctx.model) + "\n", encoding="utf-8")
    parameters = float(str(ctx.model["parameters"]))
    weights = float(str(ctx.model["weights_bytes"]))
    outcome.notes.append(
        f"{parameters / 1e6:,.1f} M parameters ({weights / 2**30:.2f} GiB) on "
        f"{ctx.model['device_name']}: built {ctx.model['build_seconds']} s, "
        f"saved {ctx.model['save_seconds']} s"
    )


def need_model(ctx: Context) -> dict[str, object]:
    if not ctx.model:
        built = ctx.work / "model" / "built.json"
        if not built.is_file():
            raise StepFailed("no model folder: the model step did not run or failed")
        ctx.model = json.loads(built.read_text(encoding="utf-8"))
    return ctx.model


def step_once(ctx: Context, limit: float, outcome: Outcome) -> None:
    model = need_model(ctx)
    folder = ctx.work / "once"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    page = folder / "page.png"
    shutil.copy2(str(model["page"]), page)
    settings = folder / "settings.toml"
    settings.write_text(
        "\n".join(
            [
                "[watch]",
                f"inboxes = [{json.dumps(str(folder / 'inbox'))}]",
                "[state]",
                f"dir = {json.dumps(str(folder / 'state'))}",
                "[worker]",
                f"chain = [{json.dumps(MODEL_NAME)}]",
                f"device = {json.dumps(ctx.args.device)}",
                "[log]",
                'format = "json"',
                'level = "info"',
                f"[models.{MODEL_NAME}]",
                'engine = "hf_vlm"',
                f"path = {json.dumps(str(model['folder']))}",
                f"max_new_tokens = {MAX_NEW_TOKENS}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    # The installed package runs here, not the checkout: the console script
    # beside the check's Python, from a folder outside the checkout.
    script = Path(ctx.python).parent / "ocr-inbox"
    command = [str(script)] if script.exists() else [ctx.python, "-m", "daemon"]
    command += ["once", "--config", str(settings), str(page)]
    finished = ctx.run("once", command, limit, cwd=folder, checkout_on_path=False)
    if finished.code is None:
        raise TimeoutError(f"ocr-inbox once did not finish within {limit:.0f} s")
    outcome.notes.append(judge_once(finished, page, str(model["expected_dtype"]), ctx.cpu))


def judge_once(finished: Finished, page: Path, expected_dtype: str, cpu: bool) -> str:
    """Pass: outputs, or the empty/degenerate-output sidecar; the load in the expected dtype and a working attention."""
    loaded = events(finished.output, "model.loaded")
    if not loaded:
        raise StepFailed(f"the model never loaded (exit {finished.code}):\n{tail(finished.output)}")
    record = loaded[0]
    attention = str(record.get("attention"))
    if record.get("dtype") != expected_dtype:
        raise StepFailed(f"loaded in {record.get('dtype')}, expected {expected_dtype}")
    if attention not in (("sdpa",) if cpu else ATTENTIONS):
        raise StepFailed(f"attention {attention}: expected one of {ATTENTIONS}")
    loaded_note = f"loaded in {record.get('seconds')} s on {record.get('device')}, {expected_dtype}, {attention}"
    document = Path(f"{page}.ocr.json")
    sidecar = Path(f"{page}.ocr.error.json")
    if finished.code == 0 and document.is_file() and Path(f"{page}.ocr.md").is_file():
        model = json.loads(document.read_text(encoding="utf-8"))["model"]
        if (model["dtype"], model["attention"]) != (expected_dtype, attention):
            raise StepFailed(f"the .ocr.json says {model['dtype']}, {model['attention']}")
        [done] = events(finished.output, "file.done")
        return f"{loaded_note}; outputs written, inference {done.get('inference_seconds')} s"
    if finished.code == 1 and sidecar.is_file():
        error = json.loads(sidecar.read_text(encoding="utf-8"))["error"]
        if error["kind"] not in EMPTY_OUTCOMES:
            raise StepFailed(f"error sidecar of kind {error['kind']}: {error['message']}")
        return f"{loaded_note}; {error['kind']} sidecar (random weights): {error['message'][:120]}"
    raise StepFailed(
        f"once exited {finished.code} without outputs or sidecar:\n{tail(finished.output)}"
    )


def step_bench(ctx: Context, limit: float, outcome: Outcome) -> None:
    model = need_model(ctx)
    command = [ctx.python, "-m", "bench.gpu_vlm", "--model-dir", str(model["folder"])]
    command += ["--attention", "sdpa"]
    if ctx.cpu:
        command += ["--device", "cpu", "--tiny", "--batches", "1,2", "--new-tokens", "4"]
        command += ["--repeats", "1", "--page", "448x448"]
    else:
        command += ["--batches", "1,8", "--new-tokens", str(MAX_NEW_TOKENS), "--repeats", "2"]
    finished = ctx.run("bench", command, limit)
    require_finished(finished, limit, "bench.gpu_vlm")
    lines = finished.output.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("Device:")]
    table = lines[starts[-1] :] if starts else []
    table = [line for line in table if not line.startswith("[")]  # a stop note, if any
    if not any(line.startswith("| sdpa |") for line in table):
        raise StepFailed(f"no result rows:\n{tail(finished.output)}")
    (ctx.results / "gpu-bench.md").write_text(
        "# GPU benchmark (scripts/gpu_check.py)\n\n" + "\n".join(table) + "\n", encoding="utf-8"
    )
    outcome.notes.append(f"table in {ctx.results / 'gpu-bench.md'}")
