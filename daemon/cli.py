"""Command line: run | once FILE... | status | doctor | bench, and --version.

Exit codes carry meaning: 0 fine; 1 a file failed (`once`) or the daemon hit
an error; 2 the settings or arguments are wrong (fix them before retrying);
3 no model of the chain can run (systemd should restart us later).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from daemon import __version__, logs, startup_errors
from daemon.devices import DevicePlanError, device_plan
from daemon.extras import missing_extras
from daemon.settings import (
    Settings,
    SettingsError,
    config_path,
    describe_origin,
    load_settings,
)

EXIT_USAGE = 2

log = structlog.get_logger("daemon.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocr-inbox",
        description="Watch inbox folders and write OCR text beside every image or PDF dropped there.",
    )
    parser.add_argument("--version", action="version", version=f"ocr-inbox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config",
            type=Path,
            help="settings file (default: $OCR_INBOX_CONFIG, else ./settings.toml)",
        )
        sub.add_argument(
            "--model",
            metavar="PATH_OR_ID",
            help="use this transformers model (a folder or a hub id in the local cache) instead of the chain in the settings",
        )

    run = commands.add_parser("run", help="run the daemon")
    common(run)
    run.add_argument(
        "--inbox",
        type=Path,
        action="append",
        metavar="DIR",
        help="inbox folder (repeatable); replaces watch.inboxes",
    )
    run.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the journal lives (state.dir)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="port of /metrics, /healthz, /readyz (metrics.port)",
    )

    once = commands.add_parser(
        "once", help="process these files now and exit (0: all done, 1: any failed)"
    )
    common(once)
    once.add_argument("files", type=Path, nargs="+", metavar="FILE")

    doctor = commands.add_parser("doctor", help="say what this machine can run and why")
    common(doctor)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    status = commands.add_parser(
        "status",
        help="what the journal knows: files by state, in flight, failures, nodes (exit 0; 1: its database is unreachable; 2: no such journal)",
    )
    status.add_argument(
        "--config",
        type=Path,
        help="settings file (default: $OCR_INBOX_CONFIG, else ./settings.toml)",
    )
    status.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the journal lives (state.dir)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

    bench = commands.add_parser(
        "bench", help="run the benchmarks under bench/ (see docs/benchmarks.md)"
    )
    bench.add_argument("parts", nargs="*", help="which parts to run (default: all)")
    return parser


def model_name_for(path_or_id: str) -> str:
    """A short settings name for a --model argument: its last path component."""
    tail = path_or_id.rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", tail)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    inboxes = getattr(args, "inbox", None)
    if inboxes:
        overrides.setdefault("watch", {})["inboxes"] = [str(path) for path in inboxes]
    state_dir = getattr(args, "state_dir", None)
    if state_dir is not None:
        overrides["state"] = {"dir": str(state_dir)}
    port = getattr(args, "metrics_port", None)
    if port is not None:
        overrides["metrics"] = {"port": port}
    model = getattr(args, "model", None)
    if model:
        name = model_name_for(model)
        # Family "auto": recognised from the model's config at load.
        overrides["models"] = {name: {"engine": "hf_vlm", "path": model}}
        overrides.setdefault("worker", {})["chain"] = [name]
    return overrides


def _load(args: argparse.Namespace) -> Settings:
    settings, _ = load_settings(args.config, _overrides(args))
    return settings


def _load_runnable(args: argparse.Namespace) -> Settings:
    """The settings, refused when a model of the chain needs an extra that is not installed.

    Checked before any worker starts: on a base install a VLM's workers would
    fail one after another and the daemon end with "no model can run" (exit 3,
    which systemd retries) instead of saying which extra to install (exit 2).
    """
    settings = _load(args)
    missing = missing_extras(settings)
    if missing:
        raise SettingsError(
            "\n  ".join(["cannot run this chain here:", *(item.message() for item in missing)]),
            [{"key": item.key, "problem": item.message()} for item in missing],
        )
    try:
        device_plan(settings.worker)
    except DevicePlanError as error:
        # "all" with no GPU, or a listed GPU beyond those visible: refused here
        # (exit 2) rather than every worker failing to load (exit 3, retried).
        raise SettingsError(str(error), [{"key": "worker.device", "problem": str(error)}]) from None
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from daemon.benchmark_runner import main as bench_main

        return bench_main(args.parts)
    try:
        settings = _load(args) if args.command == "doctor" else _load_runnable(args)
    except SettingsError as error:
        startup_errors.report("settings.invalid", str(error), problems=error.problems)
        return EXIT_USAGE
    logs.configure(settings.log.level, settings.log.format)
    if args.command == "doctor":
        from daemon.doctor import run_doctor

        return run_doctor(settings, as_json=args.json, out=sys.stdout)
    if args.command == "once":
        return _once(settings, args.files)
    if args.command == "status":
        return _status(settings, as_json=args.json)
    return _run(settings, args)


def _status(settings: Settings, *, as_json: bool) -> int:
    import json

    from daemon.journal.interface import JournalUnusable
    from daemon.journal.status import JournalAway, read_status, render

    try:
        report = read_status(settings.state)
    except JournalUnusable as error:
        print(f"ocr-inbox: journal: {error}", file=sys.stderr)
        return EXIT_USAGE
    except JournalAway as error:
        print(f"ocr-inbox: journal unreachable: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0


def _once(settings: Settings, files: list[Path]) -> int:
    from daemon.journal.opening import node_of
    from daemon.journal.sqlite import SqliteJournal
    from daemon.observing.metrics import Metrics
    from daemon.supervising.arbiter import Supervisor
    from daemon.watching.candidates import is_ignored

    paths: list[Path] = []
    for file in files:
        path = file.absolute()
        reason = is_ignored(path) if path.suffix.lower() != "" else None
        if reason is not None and "unsupported" in reason:
            print(f"ocr-inbox: {file}: {reason}", file=sys.stderr)
        paths.append(path)
    supervisor = Supervisor(
        settings,
        journal=SqliteJournal.open(None, node_of(settings.state)),
        metrics=Metrics(),
        watch=False,
    )
    supervisor.add_files(paths)
    return supervisor.run()


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.fitting import first_device, fit_problem, gpu_total_bytes, resident_models
    from daemon.journal.interface import JournalUnusable
    from daemon.journal.opening import open_journal
    from daemon.observing.metrics import Metrics
    from daemon.observing.systemd_notify import Notifier
    from daemon.supervising.arbiter import Supervisor

    problem = fit_problem(resident_models(settings), gpu_total_bytes(first_device(settings)))
    if problem is not None:
        # Refused before anything loads: a set that cannot run would only
        # crash workers with out-of-memory errors one after another.
        log.error("daemon.models_do_not_fit", error=problem)
        print(f"ocr-inbox: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        journal = open_journal(settings.state)
    except JournalUnusable as error:
        where = (
            "state.url, OCR_INBOX_STATE__URL or state.password_file"
            if settings.state.url
            else "state.dir, OCR_INBOX_STATE__DIR or --state-dir"
        )
        startup_errors.report(
            "journal.unusable",
            f"{error} ({where})",
            fmt=settings.log.format,
            state_dir=str(settings.state.dir),
        )
        return EXIT_USAGE
    metrics = Metrics()

    def reload_settings() -> Settings:
        reloaded = _load_runnable(args)
        problem = fit_problem(resident_models(reloaded), gpu_total_bytes(first_device(reloaded)))
        if problem is not None:
            raise SettingsError(problem)  # the running settings stay
        return reloaded

    supervisor = Supervisor(
        settings,
        journal=journal,
        metrics=metrics,
        notifier=Notifier(),
        reload_settings=reload_settings,
    )
    server = None
    if settings.metrics.enabled:
        from daemon.observing.metrics_server import MetricsServer

        server = MetricsServer(
            metrics.registry, supervisor.ready_state, settings.metrics.host, settings.metrics.port
        )
        try:
            server.start()
        except OSError as error:
            origin = describe_origin(
                ("metrics", "port"), config_path(args.config), _overrides(args)
            )
            startup_errors.report(
                "metrics.bind_failed",
                startup_errors.metrics_bind_message(
                    settings.metrics.host, settings.metrics.port, error, origin
                ),
                fmt=settings.log.format,
                host=settings.metrics.host,
                port=settings.metrics.port,
                error=error.strerror or str(error),
            )
            return 1
        log.info("metrics.serving", host=settings.metrics.host, port=server.port)
    try:
        return supervisor.run()
    except JournalUnusable as error:
        # A shared journal's server that comes back refusing our credentials
        # (changed while we waited): as at start, the settings must change.
        print(f"ocr-inbox: journal: {error}", file=sys.stderr)
        log.error("journal.unusable", error=str(error))
        return EXIT_USAGE
    finally:
        if server is not None:
            server.stop()
        journal.close()


if __name__ == "__main__":
    sys.exit(main())
