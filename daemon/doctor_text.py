"""`ocr-inbox doctor`'s report as text for a terminal (daemon/doctor.py gathers it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.doctor import ModelReport, Report


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.1f} GiB"


def _probe_line(name: str, probe: dict[str, Any]) -> str:
    return f"    {name:<18} {'ok' if probe['ok'] else 'no: ' + probe['reason']}"


def render_text(report: Report) -> str:
    lines = ["Software"]
    lines += [f"  {name:<14} {value}" for name, value in report.software.items()]
    lines += ["", "GPUs"]
    if not report.gpus:
        lines.append(f"  {report.cuda['reason']}")
    for gpu in report.gpus:
        kernels = "yes" if gpu["arch_supported"] else "NO (torch has no kernels for it)"
        lines.append(
            f"  cuda:{gpu['index']}  {gpu['name']}  compute {gpu['capability']}  "
            f"{_gib(gpu['total_memory_bytes'])}  torch kernels: {kernels}  "
            f"bf16: {'yes' if gpu['bf16'] else 'no'}  tf32: {'yes' if gpu['tf32'] else 'no'}"
        )
        lines.append(_probe_line("flash_attention_2", gpu["flash_attn"]))
        lines += [_probe_line(f"sdpa {name}", probe) for name, probe in gpu["sdpa"].items()]
    if report.cuda["arch_list"]:
        lines.append(
            f"  torch built for CUDA {report.cuda['built_for']}: {report.cuda['arch_list']}"
        )
    flash = report.flash_attn
    lines.append(
        f"  flash_attn: {'installed ' + str(flash['version']) if flash['installed'] else 'not installed'}"
    )
    lines += ["", f"CPU ({report.cpu['threads']} threads)"]
    lines += [_probe_line(f"sdpa {name}", probe) for name, probe in report.cpu["sdpa"].items()]
    for extra, state in report.extras.items():
        if not state["installed"]:
            needed = ", ".join(repr(name) for name in state["needed_by"]) or "no model of the chain"
            lines += [
                "",
                f"Extra {extra!r}: NOT INSTALLED (missing {', '.join(state['missing'])});"
                f" needed by {needed}",
                f"  add it: {state['install']}",
            ]
    lines += ["", "NVML"]
    if not report.nvml["available"]:
        lines.append(f"  {report.nvml['reason']}")
    for device in report.nvml["devices"]:
        lines.append(
            f"  GPU {device['index']}  {device['name']}  {_gib(device['used_bytes'])} used "
            f"of {_gib(device['total_bytes'])}  (driver {device['driver']})"
        )
    lines += [
        "",
        f"Models (worker.chain, then the inboxes' chains; device {report.device_setting})",
    ]
    for model in report.models:
        lines += _model_lines(model)
    lines += ["", "Workers of the daemon's chain (worker.device, worker.count)"]
    if report.plan_problem:
        lines.append(f"  NOT PLANNED: {report.plan_problem}")
    else:
        lines.append(f"  {', '.join(report.workers)}")
    lines += ["", "Resident at once (the first model of every inbox's chain)"]
    for held in report.resident:
        where = "GPU" if held["on_gpu"] else "CPU"
        copies = f" x{held['copies']}" if held["copies"] > 1 else ""
        lines.append(f"  {held['name']}{copies}  {where}  {_gib(held['weight_bytes'])}")
    lines.append(f"  {'DO NOT FIT: ' + report.fit_problem if report.fit_problem else 'fit'}")
    lines.append("")
    first = report.models[0]
    if report.ok:
        lines.append(f"OK: the first model of the chain, {first.name!r}, loads here.")
    elif report.plan_problem:
        lines.append("NOT OK: the workers' devices are not on this machine (see Workers).")
    elif first.loads:
        lines.append("NOT OK: the models resident at once do not fit the GPU.")
    else:
        lines.append(f"NOT OK: the first model of the chain, {first.name!r}, cannot run here.")
    return "\n".join(lines) + "\n"


def _model_lines(model: ModelReport) -> list[str]:
    status = f"loads ({model.load_seconds} s)" if model.loads else "DOES NOT LOAD"
    lines = [f"  {model.position}. {model.name}  engine {model.engine}  {status}"]
    if model.found is not None:
        lines.append(
            f"     found locally: {'yes, ' + str(model.location) if model.found else 'no'}"
        )
    facts = [
        f"{label} {value}"
        for label, value in (
            ("family", model.family),
            ("device", model.device),
            ("dtype", model.dtype),
            ("attention", model.attention),
        )
        if value
    ]
    if facts:
        lines.append("     " + "  ".join(facts))
    lines += [f"     attention fallback: {reason}" for reason in model.attention_fallbacks]
    if model.error:
        lines.append(f"     error: {model.error}")
    return lines
