"""The GPU proof in one call: install offline, run the GPU tests, a 2B model through `once`, the benchmark.

    python3 scripts/gpu_check.py                    # on the bare GPU machine (issue 19)
    python3 scripts/gpu_check.py --only once,bench  # a second try of what failed
    make gpu-check                                  # on a GPU box with network: the full .venv
    python3 scripts/gpu_check.py --device cpu       # tiny sizes on a CPU (the test suite does)

Steps, each under its own time limit, then a summary (Markdown, also written
to $OUT/gpu-check.md when $OUT is set, else .gpu-check/results/):

  install    a virtual environment from the wheelhouse (make gpu-wheelhouse), offline
  gpu-tests  pytest -m gpu tests/gpu: bf16 and SDPA chosen and probed, a real
             device-side assert recovered, a real OOM retried smaller in the same
             worker, torch and NVML memory on /metrics
  model      a Qwen2-VL-2B-sized model with random weights written to disk (bench/gpu_model.py)
  once       `ocr-inbox once` on a page with that model, through the daemon's own worker
  bench      bench/gpu_vlm.py on that folder: prefill and decode tokens/s at batch 1
             and 8 against the bandwidth bound, peak VRAM, model load seconds

The install step and why it makes a virtual environment over the image's
packages: scripts/gpu_check_install.py; the other steps: scripts/gpu_check_steps.py.

Time budget (a GPU machine is lent for 15 minutes of device time in all,
machine start included, and a second try must fit): on an H100 the steps
should take about install 20 s, gpu-tests 90 s, model 30 s, once 45 s,
bench 60 s, some 4 to 5 minutes (a CPU run of the same steps at tiny
sizes over a simulated image, Python 3.12 with the image's packages and this
wheelhouse, took 2 minutes on two shared cores, 18 s of it the install). Each step's limit
is about twice the GPU estimate (below), and the whole run stops at --budget
(390 s): a run that hangs everywhere still ends within 6.5 minutes, leaving
room for a second, narrower try (--only) on the same warm machine.

Standard library only: it runs on the image's Python before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a file: make `scripts` importable

from scripts.gpu_check_install import step_install  # noqa: E402  (needs the line above)
from scripts.gpu_check_steps import (  # noqa: E402
    Context,
    Outcome,
    StepFailed,
    StepSkipped,
    step_bench,
    step_gpu_tests,
    step_model,
    step_once,
)

STEPS: tuple[str, ...] = ("install", "gpu-tests", "model", "once", "bench")
STEP_FUNCTIONS: dict[str, Callable[[Context, float, Outcome], None]] = {
    "install": step_install,
    "gpu-tests": step_gpu_tests,
    "model": step_model,
    "once": step_once,
    "bench": step_bench,
}
# Seconds per step: about twice what each should take on an H100 (see above).
LIMITS: dict[str, float] = {
    "install": 90,
    "gpu-tests": 180,
    "model": 90,
    "once": 120,
    "bench": 150,
}
BUDGET_SECONDS = 390.0
MIN_STEP_SECONDS = 10.0  # a step is not started with less left than this


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: tiny sizes")
    parser.add_argument("--wheelhouse", type=Path, default=REPO / ".gpu-check" / "wheelhouse")
    parser.add_argument("--python", default=None, help="use this Python as it is (no install step)")
    parser.add_argument("--work", type=Path, default=REPO / ".gpu-check", help="scratch folder")
    parser.add_argument("--out", type=Path, default=None, help="results (default: $OUT)")
    parser.add_argument("--only", default=",".join(STEPS), help="steps to run, comma-separated")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds in all")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help="another time limit for one step",
    )
    args = parser.parse_args(argv)
    if args.python:
        # Absolute, but not resolved: a venv's python is a symlink to the base interpreter.
        args.python = os.path.abspath(args.python)
    args.only = [step.strip() for step in args.only.split(",") if step.strip()]
    unknown = sorted(set(args.only) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps: {', '.join(STEPS)}")
    args.limits = dict(LIMITS)
    for item in args.limit:
        step, _, seconds = item.partition("=")
        if step not in STEPS or not seconds:
            parser.error(f"--limit {item!r}: expected STEP=SECONDS with a step of {STEPS}")
        args.limits[step] = float(seconds)
    return args


# --- the run and its summary -----------------------------------------------------------------


def run_steps(ctx: Context) -> list[Outcome]:
    outcomes = []
    for step in STEPS:
        limit = float(ctx.args.limits[step])
        outcome = Outcome(step, "not run", limit=limit)
        outcomes.append(outcome)
        if step not in ctx.args.only and step != "install":
            continue
        if step == "install" and step not in ctx.args.only:
            # A later try (--only) reuses the environment of the first.
            ctx.python = ctx.args.python or str(ctx.work / "venv" / "bin" / "python")
            outcome.notes.append(f"not asked for: using {ctx.python}")
            if not Path(ctx.python).exists():
                outcome.result = "fail"
                outcome.notes.append("it does not exist: run the install step")
                ctx.python = ""
            continue
        if step != "install" and not ctx.python:
            outcome.result = "skip"
            outcome.notes.append("no Python to run it with: the install step failed")
            continue
        left = ctx.remaining()
        if left < MIN_STEP_SECONDS:
            outcome.result = "skip"
            outcome.notes.append(f"the budget of {ctx.args.budget:.0f} s is spent")
            continue
        outcome.limit = min(limit, left)
        began = time.monotonic()
        print(f"gpu-check: {step} (limit {outcome.limit:.0f} s) ...", flush=True)
        try:
            STEP_FUNCTIONS[step](ctx, outcome.limit, outcome)
            outcome.result = "pass"
        except StepSkipped as reason:
            outcome.result = "skip"
            outcome.notes.append(str(reason))
        except TimeoutError as reason:
            outcome.result = "timeout"
            outcome.notes.append(str(reason))
        except Exception as error:  # the next steps still run: one call shows all it can
            outcome.result = "fail"
            outcome.notes.append(
                str(error) if isinstance(error, StepFailed) else f"{type(error).__name__}: {error}"
            )
            if step == "install":
                ctx.python = ""
        outcome.seconds = time.monotonic() - began
        print(f"gpu-check: {step}: {outcome.result} in {outcome.seconds:.1f} s", flush=True)
    return outcomes


def verdict(outcomes: Sequence[Outcome]) -> tuple[bool, str]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    ok = not any(outcome.result in ("fail", "timeout") for outcome in outcomes)
    summary = ", ".join(f"{value} {key}" for key, value in counts.items())
    return ok, f"gpu-check: {'PASS' if ok else 'FAIL'} ({summary})"


def render(ctx: Context, outcomes: Sequence[Outcome], total: float) -> str:
    line = verdict(outcomes)[1]
    gpu = ctx.facts.get("gpu", "none (CPU run)" if ctx.cpu else "unknown")
    lines = [
        "# GPU check (scripts/gpu_check.py)",
        "",
        f"- Device: {gpu}; --device {ctx.args.device}",
        f"- Python: {ctx.python or 'none'}; total {total:.1f} s of a {ctx.args.budget:.0f} s budget",
        "",
        "| step | result | seconds | limit s | notes |",
        "|---|---|---:|---:|---|",
    ]
    for outcome in outcomes:
        notes = " / ".join(note.replace("\n", " ").replace("|", "\\|") for note in outcome.notes)
        lines.append(
            f"| {outcome.step} | {outcome.result} | {outcome.seconds:.1f} | {outcome.limit:.0f} | {notes} |"
        )
    bench = ctx.results / "gpu-bench.md"
    if bench.is_file() and any(o.step == "bench" and o.result == "pass" for o in outcomes):
        lines += ["", bench.read_text(encoding="utf-8").split("\n", 2)[2].rstrip()]
    lines += ["", f"Logs: {ctx.results / 'logs'}", "", line]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    results = out if out is not None else args.work / "results"
    results.mkdir(parents=True, exist_ok=True)
    for old in ("logs", "gpu-bench.md", "gpu-tests.xml"):
        target = results / old
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    args.work.mkdir(parents=True, exist_ok=True)
    ctx = Context(args=args, work=args.work, results=results, started=started)
    outcomes = run_steps(ctx)
    report = render(ctx, outcomes, time.monotonic() - started)
    (results / "gpu-check.md").write_text(report, encoding="utf-8")
    sys.stdout.write("\n" + report)
    return 0 if verdict(outcomes)[0] else 1


if __name__ == "__main__":
    sys.exit(main())
