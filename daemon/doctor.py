"""`ocr-inbox doctor`: what this machine can run, and why a model will or won't.

It runs in the command's own process (not a worker), probes the hardware with
real tiny computations (hardware.py), then loads every model of the fallback
chain (and of every inbox's own chain) with the same engine code the worker
uses, and releases it. The exit status answers the operator's question "will
the daemon start serving?": 0 when the first model of the chain loads here
and the models resident at once fit the GPU (daemon.fitting), 1 when not.

On a base install (no torch: the `vlm` extra is missing) it still runs: the
GPUs are not probed, the report says which extra is missing and the command
that adds it, and the embedded engine is loaded as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from daemon.cpus import usable_cpus
from daemon.devices import DevicePlanError, device_plan
from daemon.doctor_text import render_text
from daemon.extras import ENGINE_EXTRAS, EXTRA_MODULES, install_hint, missing_modules
from daemon.fitting import ResidentModel, fit_problem, resident_models
from daemon.settings import Settings

if TYPE_CHECKING:
    from daemon.worker.engines.hf_vlm import HfVlmEngine, LoadPlan

EXIT_OK = 0
EXIT_FIRST_MODEL_FAILS = 1


@dataclass(slots=True)
class ModelReport:
    position: int  # 1-based place in worker.chain
    name: str
    engine: str
    found: bool | None = None  # None: the engine has nothing to find (embedded models)
    location: str | None = None
    family: str | None = None
    device: str | None = None
    dtype: str | None = None
    attention: str | None = None  # the implementation that ran (or would be tried first)
    attention_candidates: list[str] = field(default_factory=list)
    attention_fallbacks: list[str] = field(default_factory=list)
    loads: bool = False
    load_seconds: float | None = None
    error: str | None = None
    info: dict[str, Any] | None = None
    gpu_bytes: int | None = None  # GPU memory allocated once loaded (torch), when on a GPU


@dataclass(slots=True)
class Report:
    software: dict[str, Any]
    cuda: dict[str, Any]
    gpus: list[dict[str, Any]]
    cpu: dict[str, Any]
    flash_attn: dict[str, Any]
    nvml: dict[str, Any]
    device_setting: str | list[str]
    models: list[ModelReport]
    # One entry per worker of the daemon's chain (daemon.devices), and why
    # there is no plan (the daemon refuses to start: exit 2).
    workers: list[str] = field(default_factory=list)
    plan_problem: str | None = None
    # Per install extra: installed or not, what is missing, how to add it, who needs it.
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The models every inbox's chain keeps loaded at once (daemon.fitting), and
    # why they do not fit the GPU (None: they fit, or there is no GPU to judge).
    resident: list[dict[str, Any]] = field(default_factory=list)
    fit_problem: str | None = None

    @property
    def ok(self) -> bool:
        return (
            bool(self.models)
            and self.models[0].loads
            and self.fit_problem is None
            and self.plan_problem is None
        )

    def as_dict(self) -> dict[str, Any]:
        data = {name.name: getattr(self, name.name) for name in dataclasses.fields(self)}
        data["models"] = [dataclasses.asdict(model) for model in self.models]
        data["ok"] = self.ok
        return data


def run_doctor(settings: Settings, *, as_json: bool, out: TextIO) -> int:
    """Probe, load every model of the chain, print the report; the exit status."""
    with logs_to_stderr():
        report = build_report(settings)
    if as_json:
        json.dump(report.as_dict(), out, indent=2, default=str)
        out.write("\n")
    else:
        out.write(render_text(report))
    return EXIT_OK if report.ok else EXIT_FIRST_MODEL_FAILS


@contextlib.contextmanager
def logs_to_stderr() -> Iterator[None]:
    """Engines log while they load; the report owns stdout (and --json must parse)."""
    import structlog

    previous = structlog.get_config()["logger_factory"]
    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=sys.stderr))
    try:
        yield
    finally:
        structlog.configure(logger_factory=previous)


# --- gathering -------------------------------------------------------------------


def build_report(settings: Settings) -> Report:
    extras = _extras(settings)
    if not extras["vlm"]["installed"]:
        return _report_without_torch(settings, extras)
    import torch

    from daemon.worker import hardware

    gpus = []
    cuda_ok = torch.cuda.is_available()
    for index in range(torch.cuda.device_count() if cuda_ok else 0):
        info = dataclasses.asdict(hardware.gpu_info(index))
        device = torch.device("cuda", index)
        info["sdpa"] = _probes(hardware.sdpa_backends(device))
        info["flash_attn"] = dataclasses.asdict(hardware.flash_attn_probe(device))
        gpus.append(info)
    readings, nvml_reason = hardware.nvml_readings()
    models = [
        check_model(settings, name, position)
        for position, name in enumerate(_chain_models(settings), start=1)
    ]
    resident = _resident(settings, models)
    flash_version = hardware.package_version("flash-attn") or hardware.package_version("flash_attn")
    return Report(
        software=_software(),
        cuda={
            "available": cuda_ok,
            "reason": None if cuda_ok else hardware.no_gpu_reason(),
            "built_for": torch.version.cuda,
            "arch_list": torch.cuda.get_arch_list() if torch.version.cuda else [],
            "device_count": len(gpus),
        },
        gpus=gpus,
        cpu={
            "threads": torch.get_num_threads(),
            "sdpa": _probes(hardware.sdpa_backends(torch.device("cpu"))),
        },
        flash_attn={
            "installed": flash_version is not None,
            "version": flash_version,
            "usable_on": [gpu["index"] for gpu in gpus if gpu["flash_attn"]["ok"]],
        },
        nvml={
            "available": bool(readings),
            "reason": nvml_reason or None,
            "devices": [dataclasses.asdict(reading) for reading in readings],
        },
        device_setting=settings.worker.device,
        models=models,
        extras=extras,
        resident=[dataclasses.asdict(model) for model in resident],
        fit_problem=fit_problem(resident, _gpu_total(gpus, checked_device(settings))),
        **_workers(settings),
    )


def _check_chain(settings: Settings) -> list[ModelReport]:
    return [
        check_model(settings, name, position)
        for position, name in enumerate(_chain_models(settings), start=1)
    ]


def _extras(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each install extra: is it here, and which models of the chain need it."""
    report = {}
    for extra in EXTRA_MODULES:
        missing = missing_modules(extra)
        report[extra] = {
            "installed": not missing,
            "missing": list(missing),
            "install": install_hint(extra),
            "needed_by": [
                name
                for name in _chain_models(settings)
                if ENGINE_EXTRAS.get(settings.model(name).engine) == extra
            ],
        }
    return report


def _report_without_torch(settings: Settings, extras: dict[str, dict[str, Any]]) -> Report:
    """The base install: nothing probes a GPU without torch; the models are checked as usual."""
    why = f"not probed: torch is not installed (the vlm extra: {install_hint('vlm')})"
    models = _check_chain(settings)
    flash_version = _package_version("flash-attn") or _package_version("flash_attn")
    return Report(
        software={"python": platform.python_version()}
        | {name: _package_version(name) for name in SOFTWARE},
        cuda={
            "available": False,
            "reason": why,
            "built_for": None,
            "arch_list": [],
            "device_count": 0,
        },
        gpus=[],
        cpu={"threads": usable_cpus(), "sdpa": {}},
        flash_attn={
            "installed": flash_version is not None,
            "version": flash_version,
            "usable_on": [],
        },
        nvml={"available": False, "reason": why, "devices": []},
        device_setting=settings.worker.device,
        models=models,
        extras=extras,
        # Without torch no GPU is judged: the resident set is shown, its fit is not.
        resident=[dataclasses.asdict(model) for model in _resident(settings, models)],
        **_workers(settings),
    )


def _workers(settings: Settings) -> dict[str, Any]:
    """The device plan as the daemon would start it: each worker's device and pinning."""
    try:
        return {"workers": [place.describe() for place in device_plan(settings.worker)]}
    except DevicePlanError as error:
        return {"workers": [], "plan_problem": str(error)}


def checked_device(settings: Settings) -> str:
    """The device the models are loaded on here: the first worker's (this process is unpinned,
    so a listed GPU keeps its own number)."""
    try:
        return device_plan(settings.worker)[0].device
    except DevicePlanError:
        return "auto"


# The packages whose versions the report shows (torch's build details beside them when present).
SOFTWARE = ("torch", "transformers", "accelerate", "nvidia-ml-py", "onnxruntime", "rapidocr")


def _package_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _chain_models(settings: Settings) -> list[str]:
    """[worker] chain, then the models only the inboxes' own chains name."""
    names = list(settings.worker.chain)
    for chain in settings.chains():
        names += [name for name in chain if name not in names]
    return names


def _resident(settings: Settings, models: list[ModelReport]) -> list[ResidentModel]:
    """The resident set, each model's size measured by its load where that was on a GPU."""
    measured = {model.name: model.gpu_bytes for model in models if model.gpu_bytes}
    return [
        dataclasses.replace(model, weight_bytes=measured.get(model.name, model.weight_bytes))
        for model in resident_models(settings)
    ]


def _gpu_total(gpus: list[dict[str, Any]], device: str) -> int | None:
    if device == "cpu" or not gpus:
        return None
    index = int(device.partition(":")[2] or 0)
    return next((int(g["total_memory_bytes"]) for g in gpus if g["index"] == index), None)


def _probes(probes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(probe) for name, probe in probes.items()}


def _software() -> dict[str, Any]:
    import torch

    from daemon.worker import hardware

    cudnn = None
    if torch.backends.cudnn.is_available():
        number = int(torch.backends.cudnn.version() or 0)  # 91900 -> 9.19.0
        cudnn = f"{number // 10000}.{number % 10000 // 100}.{number % 100}"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": cudnn,
        "transformers": hardware.package_version("transformers"),
        "accelerate": hardware.package_version("accelerate"),
        "nvidia_ml_py": hardware.package_version("nvidia-ml-py"),
        "onnxruntime": hardware.package_version("onnxruntime"),
        "rapidocr": hardware.package_version("rapidocr"),
    }


def check_model(settings: Settings, name: str, position: int) -> ModelReport:
    """Find, plan and load one model of the chain exactly as a worker would."""
    from daemon.worker.engines import build_engine
    from daemon.worker.engines.base import Runtime

    model = settings.model(name)
    report = ModelReport(position=position, name=name, engine=model.engine)
    runtime = Runtime(
        device=checked_device(settings),
        threads=settings.worker.threads,
        allow_download=settings.worker.allow_download,
    )
    engine = None
    try:
        # Raises MissingExtraError, naming the extra, when the engine's packages are absent.
        engine = build_engine(name, model, runtime)
        started = time.perf_counter()
        if model.engine == "hf_vlm":
            from daemon.worker.engines.hf_vlm import HfVlmEngine

            assert isinstance(engine, HfVlmEngine)
            # Planned once: what the report says is what the load then does.
            info = engine.load(_plan_hf_vlm(report, engine))
        else:
            info = engine.load()
        report.load_seconds = round(time.perf_counter() - started, 3)
        report.loads = True
        report.info = dataclasses.asdict(info)
        report.device, report.dtype, report.attention = info.device, info.dtype, info.attention
        report.family = info.family or report.family
        report.attention_fallbacks = list(info.details.get("attention_fallbacks", []))
        report.gpu_bytes = sum(reading.allocated_bytes for reading in engine.memory()) or None
    except Exception as error:  # the report's job is to say what went wrong, whatever it was
        report.error = f"{type(error).__name__}: {error}"
    finally:
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.close()
    return report


def _plan_hf_vlm(report: ModelReport, engine: HfVlmEngine) -> LoadPlan:
    """Fill in what loading will do; raises ModelNotFoundError when the model is not here."""
    from daemon.worker import hardware
    from daemon.worker.engines.base import ModelNotFoundError

    try:
        plan = engine.plan()
    except ModelNotFoundError:
        report.found = False
        raise
    report.found = True
    report.location = str(plan.location.directory)
    report.family = plan.family
    report.device = str(plan.device)
    report.dtype = hardware.dtype_name(plan.dtype)
    report.attention_candidates = list(plan.attention)
    report.attention = plan.attention[0] if plan.attention else None
    report.attention_fallbacks = list(plan.skipped)
    return plan
