"""`ocr-inbox bench [PART ...]`: run the benchmarks kept in a checkout's bench/ folder.

The benchmarks are not part of the installed package: they build page sets
with the helpers they share with the tests (harness/) and drive the daemon
as a subprocess. So this command finds a checkout, in this order: the folder that
holds the imported `daemon` package (an editable install, `pip install -e .`,
which `make` does), then the current directory; and runs each part there as
`python -m bench.<module>` with the checkout on PYTHONPATH, one process per
part, its Markdown tables going straight to stdout. From an installed wheel
outside a checkout it says so and exits 2.

Parts (default: overhead latency backlog tesseract gpu pdf remote):
    overhead   (a) pages/s through the daemon against the bare engine
    latency    (b) p50/p95 of settle, queue, inference, write per file
    backlog    (c) 10,000 files at once; start-up over 100,000 finished files
    tesseract  (d) CER, word recall and pages/s against Tesseract per page type
    gpu        (e) a Qwen2-VL-2B-sized model on the GPU (skipped without one)
    pdf        (f) what the searchable PDF costs on top of OCR (10-page PDF, photo)
    remote     (g) the remote engine: pages/s with K in flight, and against a bare client
    tuning     follow-through: engine threads, detector size, PDF DPI (optional)
    chaos      the chaos drill with recovery times (optional)
    postgres   (h) a backlog admitted through PostgreSQL, 1 and 3 daemons, beside SQLite (optional)

OCR_INBOX_BENCH_QUICK=1 runs every part on a tiny input (the smoke tests use it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.cpus import load_average, usable_cpus

QUICK_ENV = "OCR_INBOX_BENCH_QUICK"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_GPU = 2  # what bench/gpu_vlm.py returns when torch sees no CUDA device


@dataclass(frozen=True)
class Part:
    name: str
    module: str
    title: str
    quick_args: tuple[str, ...]
    default: bool = True


PARTS = (
    Part("overhead", "bench.overhead", "(a) overhead against the bare engine", ("--quick",)),
    Part("latency", "bench.latency", "(b) latency per file", ("--quick",)),
    Part("backlog", "bench.backlog", "(c) backlog scale", ("--quick",)),
    Part("tesseract", "bench.versus_tesseract", "(d) against Tesseract", ("--quick",)),
    Part(
        "gpu",
        "bench.gpu_vlm",
        "(e) GPU: a Qwen2-VL-2B-sized model",
        ("--batches", "1", "--new-tokens", "8", "--repeats", "1"),
    ),
    Part("pdf", "bench.searchable_pdf", "(f) searchable PDF on top of OCR", ("--quick",)),
    Part("remote", "bench.remote", "(g) remote engine: many pages in flight", ("--quick",)),
    Part("tuning", "bench.tuning", "follow-through: engine settings", ("--quick",), default=False),
    Part(
        "chaos",
        "bench.chaos",
        "chaos drill with recovery times",
        ("--files", "30", "--kills", "2"),
        default=False,
    ),
    Part(
        "postgres",
        "bench.postgres",
        "(h) shared journal: a backlog through PostgreSQL",
        ("--quick",),
        default=False,
    ),
)


def find_checkout(candidates: Sequence[Path] | None = None) -> Path | None:
    """The source tree holding bench/ and harness/, or None."""
    if candidates is None:
        candidates = [Path(__file__).resolve().parents[1], Path.cwd()]
    for root in candidates:
        if (root / "bench" / "__init__.py").is_file() and (
            root / "harness" / "__init__.py"
        ).is_file():
            return root
    return None


def gpu_absent_reason() -> str | None:
    """Why the GPU part cannot run here, or None when an NVIDIA GPU seems present.

    Decided without importing torch: the driver's device nodes or nvidia-smi.
    bench/gpu_vlm.py checks again with torch.cuda and exits 2 without a GPU.
    """
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
        if listed.returncode == 0 and "GPU" in listed.stdout:
            return None
    return "no NVIDIA GPU on this machine (no /dev/nvidia* device, nvidia-smi lists none)"


def machine_line() -> str:
    return f"{usable_cpus()} cores; load average {load_average()}"


def run_part(part: Part, checkout: Path, quick: bool) -> tuple[str, float]:
    """Run one part; returns its status ('ok', 'failed (N)', 'skipped: ...') and seconds."""
    began = time.monotonic()
    if part.name == "gpu":
        reason = gpu_absent_reason()
        if reason is not None:
            print(
                f"### {part.title}\n\nSkipped: {reason}. Run it on a GPU machine with\n"
                "`python bench/gpu_vlm.py` (see docs/benchmarks.md).\n",
                flush=True,
            )
            return f"skipped: {reason}", time.monotonic() - began
    if not (checkout / Path(*part.module.split("."))).with_suffix(".py").is_file():
        print(f"### {part.title}\n\nSkipped: {part.module} is not in this checkout.\n", flush=True)
        return "skipped: not in this checkout", time.monotonic() - began
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    command = [sys.executable, "-m", part.module, *(part.quick_args if quick else ())]
    print(f"<!-- {part.name}: {' '.join(command[1:])} -->", flush=True)
    code = subprocess.run(command, cwd=checkout, env=env, check=False).returncode
    seconds = time.monotonic() - began
    if part.name == "gpu" and code == EXIT_NO_GPU:
        return "skipped: torch sees no CUDA device", seconds
    return ("ok" if code == 0 else f"failed (exit {code})"), seconds


def main(names: Sequence[str]) -> int:
    by_name = {part.name: part for part in PARTS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(part.name for part in PARTS)
        print(
            f"ocr-inbox bench: unknown part(s) {', '.join(unknown)}; parts: {known}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    checkout = find_checkout()
    if checkout is None:
        print(
            "ocr-inbox bench: the benchmarks live in a source checkout's bench/ folder; "
            "run this from the checkout (cd ocr-inbox && ocr-inbox bench), or use `make bench`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    chosen = [by_name[name] for name in names] if names else [p for p in PARTS if p.default]
    quick = os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes")
    command = " ".join(["ocr-inbox bench", *names])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(
        f"## ocr-inbox benchmarks\n\n`{command}` in {checkout}; {machine_line()}; "
        f"started {started}" + (" (QUICK: tiny inputs)" if quick else "") + "\n",
        flush=True,
    )
    results = []
    for part in chosen:
        status, seconds = run_part(part, checkout, quick)
        results.append((part, status, seconds))
        print(flush=True)
    print("### Summary\n\n| part | status | seconds |\n|---|---|---:|")
    for part, status, seconds in results:
        print(f"| {part.name} | {status} | {seconds:.0f} |")
    print(f"| total | | {sum(seconds for _, _, seconds in results):.0f} |", flush=True)
    return EXIT_FAILED if any(status.startswith("failed") for _, status, _ in results) else EXIT_OK
