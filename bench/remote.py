"""Remote: the daemon as a client of an inference server, many pages in flight.

    python -m bench.remote [--delay 0.5] [--in-flight 1,4,16,32,64] [--served-pages 16] [--quick]

1. Against the fault-injecting server (harness/fake_server.py) answering
   every request after a fixed delay, so the server is the bottleneck and
   throughput can only come from concurrency: pages/s with K in flight, from
   the first request to the last file done, against K times the rate of one
   request at a time (the goal: at least 0.8 x K). `rounds` x K one-page files per
   run, dropped at once; the worker's peak memory beside (in-flight requests
   cost threads and sockets, not processes).
2. Against a real server, `transformers serve` with the tests' tiny Qwen2-VL
   on CPU: the daemon's pages/s against a bare client loop (K threads posting
   the same pages with httpx, as a user's script would) at the same
   concurrency, on the same pages (the goal: at least 0.9), the daemon timed
   from its first file stable (after the settle window) to its last done.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.live import BenchDaemon, drop, peak_rss_of, running, settings_for
from harness import pages
from harness.driver import record_time
from harness.fake_server import FakeServer, Reply
from harness.inference_server import TransformersServer
from harness.tiny_models import tiny_model

PAGE = pages.render_page(("Remote benchmark page", "second line"), width=448, height=336)


def remote_model(url: str, served: str, in_flight: int, **values: Any) -> dict[str, Any]:
    return {
        "engine": "openai",
        "base_url": url,
        "model": served,
        "max_in_flight": in_flight,
        "max_new_tokens": 16,
        **values,
    }


def worker_peak_rss(daemon: BenchDaemon) -> int | None:
    started = daemon.log.by_event.get("worker.started", [])
    if not started:
        return None
    return peak_rss_of(int(started[-1]["pid"]))


def run_daemon(root: Path, model: dict[str, Any], count: int) -> tuple[float, float, int | None]:
    """Drop `count` one-page files at once: (the first file stable, the last done, worker peak RSS), wall times."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    settings = settings_for(
        inbox, root / "state", chain=["remote"], models={"remote": model}, settle_seconds=0.2
    )
    data = pages.png_bytes(PAGE)
    with running(root / "daemon", settings) as daemon:
        first = time.time()
        for index in range(count):
            drop(inbox / f"page-{index:04d}.png", data)
        daemon.wait("file.done", count, timeout=600)
        last = max(record_time(record) for record in daemon.log.by_event["file.done"])
        stable = daemon.log.by_event.get("watch.stable", [])
        if stable:  # the settle window is the watcher's, not the client's, work
            first = min(record_time(record) for record in stable)
        rss = worker_peak_rss(daemon)
    return first, last, rss


def fixed_delay(delay: float, levels: Sequence[int], work: Path, rounds: int) -> str:
    rows = []
    single_rate = 1.0 / delay
    for level in levels:
        count = rounds * level
        with FakeServer() as server:
            server.default = Reply(delay=delay)
            model = remote_model(server.url, server.served_model, level)
            _, last, rss = run_daemon(work / f"fixed-{level}", model, count)
            # From the first request: the settle window and the model load are no part of it.
            seconds = last - min(seen.began for seen in server.seen)
            peak = server.max_in_flight
        rate = count / seconds
        goal = 0.8 * level * single_rate
        rows.append(
            [
                level,
                count,
                peak,
                report.seconds(seconds, 2),
                f"{rate:.2f}",
                f"{rate / single_rate:.2f}",
                f"{rate / (level * single_rate):.2f}",
                "yes" if rate >= goal else "no",
                report.mebibytes(rss) if rss else "?",
            ]
        )
    return report.table(
        [
            "in flight (K)",
            "pages",
            "most at the server at once",
            "first request to last file done s",
            "pages/s",
            "x one at a time",
            "of K x one at a time",
            ">= 0.8 K",
            "worker peak RSS",
        ],
        rows,
    )


def bare_client(server: TransformersServer, level: int, count: int) -> float:
    """K threads posting the same pages, as a user's own script would: seconds for all."""
    buffer = io.BytesIO()
    PAGE.save(buffer, "PNG", compress_level=1)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    payload = {
        "model": server.served_model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "Read all the text in this image."},
                ],
            }
        ],
        "max_tokens": 16,
        "temperature": 0.0,
    }
    with httpx.Client(timeout=300) as client:

        def one(_: int) -> None:
            client.post(server.url + "/chat/completions", json=payload).raise_for_status()

        began = time.monotonic()
        with ThreadPoolExecutor(level) as threads:
            list(threads.map(one, range(count)))
        return time.monotonic() - began


def against_transformers(levels: Sequence[int], count: int, work: Path) -> str:
    model_dir = tiny_model("qwen2_vl", work / "models", "brief")
    # On a CPU-only machine the server and its client share the cores: the
    # server gets half of them and both clients the other half, so what the
    # daemon spends on a page (render, encode, outputs) is measured as client
    # overhead, not as CPU taken from the server (a GPU server would not feel it).
    cores = sorted(os.sched_getaffinity(0))
    server_cores = set(cores[: max(1, len(cores) // 2)])
    client_cores = set(cores) - server_cores or server_cores
    server = TransformersServer(model_dir, work / "serve.log", cpus=server_cores).start()
    os.sched_setaffinity(0, client_cores)  # the bench, and the daemons it starts
    rows = []
    try:
        bare_client(server, 1, 2)  # warm up
        for level in levels:
            bare = bare_client(server, level, count)
            model = remote_model(server.url, server.served_model, level)
            # From the first file stable (after the settle window) to the last done.
            first, last, _ = run_daemon(work / f"served-{level}", model, count)
            daemon = last - first
            rows.append(
                [
                    level,
                    count,
                    f"{count / bare:.2f}",
                    f"{count / daemon:.2f}",
                    f"{bare / daemon:.2f}",
                    "yes" if bare / daemon >= 0.9 else "no",
                ]
            )
    finally:
        server.kill()
        os.sched_setaffinity(0, cores)
    table = report.table(
        ["in flight", "pages", "bare client pages/s", "daemon pages/s", "daemon / bare", ">= 0.9"],
        rows,
    )
    return f"Server on cores {sorted(server_cores)}, clients on {sorted(client_cores)}.\n\n" + table


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--delay", type=float, default=0.5, help="the fixed server's seconds per request"
    )
    parser.add_argument("--in-flight", default="1,4,16,32,64", help="K values for part 1")
    parser.add_argument("--served-in-flight", default="1,4", help="K values for part 2")
    parser.add_argument("--served-pages", type=int, default=64, help="pages per run in part 2")
    parser.add_argument("--rounds", type=int, default=4, help="part 1: pages per run = rounds x K")
    parser.add_argument("--only", choices=["fixed", "served"], help="run one part")
    parser.add_argument("--quick", action="store_true", help="tiny runs (the smoke test)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report.quiet_logs()
    levels = [int(value) for value in args.in_flight.split(",")]
    served_levels = [int(value) for value in args.served_in_flight.split(",")]
    served_pages = args.served_pages
    delay = args.delay
    if args.quick:
        levels, served_levels, served_pages, delay = [1, 4], [2], 4, 0.2
    print(report.heading("Remote engine: many pages in flight"))
    with tempfile.TemporaryDirectory(prefix="ocr-inbox-bench-remote-") as scratch:
        work = Path(scratch)
        if args.only in (None, "fixed"):
            print(
                f"\nA server answering every request after {delay} s (the server is the "
                f"bottleneck), {args.rounds} x K one-page files:\n"
            )
            print(fixed_delay(delay, levels, work, args.rounds))
        if args.only in (None, "served"):
            print(
                "\n`transformers serve` with the tiny Qwen2-VL on CPU, the daemon against a bare "
                f"client loop on the same {served_pages} pages:\n"
            )
            print(against_transformers(served_levels, served_pages, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
