"""The GPU check's first step: a virtual environment from the wheelhouse, offline, then what it holds.

Why a virtual environment that sees the image's packages: the image's torch
(2.11, built for its CUDA) must be the one used, and nothing should be
installed over the image's own Python; the venv holds only what travelled
(transformers newer than the image's, the daemon's own dependencies, pytest)
and goes away with .gpu-check/. It sees the image's site-packages through a
.pth file that calls site.addsitedir on them: what --system-site-packages
does, except that it also works when the image's Python is itself a virtual
environment (as when the test suite runs the check). Its own site-packages
come first, so what travelled wins over the image's older copies. Wheels go
in with --no-deps: the wheelhouse holds exactly what the image lacks
(scripts/gpu_wheelhouse.py), and pip's resolver would otherwise ask for
distributions the image holds under other names (opencv's builds). pip runs
from its own wheel in the wheelhouse, so the image needs no pip.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

from scripts import package_source
from scripts.gpu_check_steps import (
    REPO,
    Context,
    Outcome,
    StepFailed,
    last_json_line,
    require_finished,
)

MIN_PROBE_SECONDS = 10.0

# What the environment probe prints (run in the check's Python).
ENVIRONMENT_PROBE = """
import json, platform, importlib.metadata as md, importlib.util as iu
import torch
facts = {"python": platform.python_version(), "torch": torch.__version__,
         "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
for name in ("transformers", "accelerate", "tokenizers", "nvidia-ml-py", "ocr-inbox"):
    try:
        facts[name] = md.version(name)
    except md.PackageNotFoundError:
        facts[name] = None
facts["flash_attn_installed"] = iu.find_spec("flash_attn") is not None
if torch.cuda.is_available():
    major, minor = torch.cuda.get_device_capability(0)
    facts["gpu"] = f"{torch.cuda.get_device_name(0)} (sm_{major}{minor})"
import daemon.cli, daemon.worker.engines.hf_vlm, pytest  # what the steps import
facts["daemon_from"] = daemon.cli.__file__.rsplit("/daemon/", 1)[0]
print(json.dumps(facts))
"""


def step_install(ctx: Context, limit: float, outcome: Outcome) -> None:
    """A venv with the wheelhouse's wheels over the image's packages; then what it holds."""
    deadline = time.monotonic() + limit
    if ctx.args.python:
        ctx.python = ctx.args.python
        outcome.notes.append(f"no install: using {ctx.python} as it is (--python)")
    else:
        ctx.python = str(install_from_wheelhouse(ctx, deadline, outcome))
    # From the scratch folder: the installed package answers, not the checkout.
    probe = ctx.run(
        "install",
        [ctx.python, "-c", ENVIRONMENT_PROBE],
        max(deadline - time.monotonic(), MIN_PROBE_SECONDS),
        cwd=ctx.work,
        checkout_on_path=False,
    )
    require_finished(probe, limit, "the import check")
    ctx.facts = last_json_line(probe.output)
    outcome.notes.append(", ".join(f"{key} {value}" for key, value in ctx.facts.items()))
    if not ctx.cpu and not ctx.facts.get("cuda_available"):
        raise StepFailed("torch sees no CUDA device here")


def install_from_wheelhouse(ctx: Context, deadline: float, outcome: Outcome) -> Path:
    """The venv with every wheel of the wheelhouse (reused when it already holds them)."""
    wheelhouse = ctx.args.wheelhouse
    manifest_path = wheelhouse / "manifest.json"
    if not manifest_path.is_file():
        raise StepFailed(
            f"no wheelhouse at {wheelhouse}: run `make gpu-wheelhouse` where PyPI is reachable"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest["source_digest"] != package_source.source_digest(REPO):
        raise StepFailed(
            f"{manifest['own_wheel']} was built from other sources than this checkout's "
            "daemon/, pyproject.toml or README.md: run `make gpu-wheelhouse` again"
        )
    [pip_wheel] = sorted(wheelhouse.glob("pip-*.whl"))
    wheels = sorted(str(path) for path in wheelhouse.glob("*.whl") if path != pip_wheel)
    venv = ctx.work / "venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed-from"
    stamp = json.dumps({"wheels": manifest["wheels"], "digest": manifest["source_digest"]})
    if marker.is_file() and marker.read_text(encoding="utf-8") == stamp and python.exists():
        outcome.notes.append(f"{venv} already holds this wheelhouse")
        return python
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site_packages] = venv.glob("lib/python*/site-packages")
    image_sites = [path for path in _site_dirs() if Path(path).is_dir()]
    (site_packages / "_gpu_check_image_site.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({path!r})" for path in image_sites) + "\n",
        encoding="utf-8",
    )
    pip = [str(python), f"{pip_wheel}/pip"]
    # --no-compile: byte-compiling all of transformers takes longer than the
    # rest of the install; the steps compile what they import as they go.
    install = [*pip, "install", "--no-index", "--no-deps", "--no-compile", "--quiet", *wheels]
    left = deadline - time.monotonic()
    finished = ctx.run("install", install, left, checkout_on_path=False)
    require_finished(finished, left, "pip install from the wheelhouse")
    left = max(deadline - time.monotonic(), MIN_PROBE_SECONDS)
    check = ctx.run("install", [*pip, "check"], left, checkout_on_path=False)
    # Informational: the image may carry its own unmet requirements, and
    # ocr-inbox's rapidocr stays home (scripts/gpu_wheelhouse.py LEFT_HOME).
    complaints = [
        line
        for line in check.output.splitlines()
        if line.strip() and not line.startswith("No broken requirements")
    ]
    if complaints:
        outcome.notes.append("pip check: " + "; ".join(complaints[:6]))
    marker.write_text(stamp, encoding="utf-8")
    outcome.notes.append(
        f"{len(wheels)} wheels into {venv} ({int(manifest['bytes']) / 2**20:.1f} MiB wheelhouse), "
        f"over the site-packages of {sys.executable}"
    )
    return python


def _site_dirs() -> list[str]:
    return [*site.getsitepackages(), site.getusersitepackages()]
