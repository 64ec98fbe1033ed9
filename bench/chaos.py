"""Chaos benchmark: the suite's chaos drill on 2,000 files, with the time to recover after each fault.

    python bench/chaos.py [--files N] [--kills K] [--seed S] [--keep DIR]

Runs the real daemon (`ocr-inbox run`) on a temporary inbox with a chain of two
fault-injection models: "flaky" fails by probability (crash, SIGSEGV, hang,
sticky CUDA error, OOM, empty or degenerate output, engine error, bad input),
"steady" never does. Meanwhile a thread SIGKILLs random worker processes, and
once 40 % of the files are finished the daemon itself is SIGKILLed and started
again.

It prints, per fault kind: how many were injected, and the time from the
fault's log line (fault.injected; for kills, the kill) to the next file.done or
model.loaded, as p50 / p95 / max; then worker restarts, total time and files/s.
It exits 1 if any promise was broken (a file without exactly one outcome, a
leftover temp file, a file done twice, an output rewritten after the kill).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.chaos import ChaosPlan, figures, problems, run_chaos, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="input files (default 2000)")
    parser.add_argument(
        "--kills", type=int, default=40, help="worker SIGKILLs from outside (default 40)"
    )
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="give up after this many seconds"
    )
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, outputs)")
    args = parser.parse_args(argv)
    plan = ChaosPlan(
        files=args.files, seed=args.seed, worker_kills=args.kills, timeout=args.timeout
    )
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _run(args.keep, plan)
    with tempfile.TemporaryDirectory(prefix="ocr-inbox-chaos-") as folder:
        return _run(Path(folder), plan)


def _run(root: Path, plan: ChaosPlan) -> int:
    print(
        f"chaos: {plan.files} files, {plan.worker_kills} worker kills, one daemon kill, "
        f"seed {plan.seed}",
        flush=True,
    )
    result = run_chaos(root, plan)
    print(table(figures(result)))
    broken = problems(result)
    if broken:
        print(f"\n{len(broken)} problems:", file=sys.stderr)
        for problem in broken[:50]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nevery file ended with exactly one outcome; nothing was done twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
