"""Prepare what travels to a bare GPU machine: the wheels its image lacks, for an offline install.

    python -m scripts.gpu_wheelhouse --out .gpu-check/wheelhouse    (make gpu-wheelhouse)

The GPU machine (issue 19) has no network and takes at most 64 MiB of the
working tree with it. Its image has Python 3.12 with torch 2.11 (CUDA 13),
torchvision, accelerate, onnxruntime, opencv, pillow, prometheus-client and
transformers 5.17, older than our pin. What travels is derived, not listed:

1. our requirements: the base install plus the `vlm` and `test` extras of
   pyproject.toml (the `dev` extra's linters stay home);
2. pip resolves them, and separately what the image has (IMAGE_HAS), for
   CPython 3.12 on manylinux x86_64, from metadata alone (`pip install
   --dry-run --report`: no torch or CUDA wheel is downloaded);
3. a package travels when the image's set lacks it, or resolves it to another
   version than ours: both resolutions are made against the same index at the
   same moment, so a difference means one of our pins (transformers >= 5.23)
   needs a version the image's set does not have.

Then `pip download --no-deps --only-binary=:all:` fetches exactly those as
CPython 3.12 wheels, `pip wheel` builds ocr-inbox itself (nothing can be
built there offline), and pip's own wheel comes along to install with, in case
the image has no pip. manifest.json records what travels and why, and the
digest of the package sources the ocr-inbox wheel was built from, so the
check can refuse a stale wheel.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts import package_source

# What the GPU image ships (issue 19), as requirements pip can resolve.
# opencv: rapidocr asks for the headless build; which build the image has does
# not matter to the check, which never runs the embedded engine's OpenCV code.
IMAGE_HAS: tuple[str, ...] = (
    "torch==2.11.*",
    "torchvision==0.26.*",
    "accelerate",
    "onnxruntime",
    "opencv-python-headless",
    "pillow",
    "prometheus-client",
    "transformers==5.17.*",
)
EXTRAS: tuple[str, ...] = ("vlm", "test")
# Our requirements that stay home, with why. The check proves the GPU side
# (the hf_vlm engine, the faulty engine's real CUDA faults, the daemon around
# them); the embedded CPU engine is proven by the suite on every CI run, and
# its wheel (bundled PP-OCR models) alone would take 27 of the 64 MiB.
LEFT_HOME: dict[str, str] = {
    "rapidocr": "the embedded CPU engine: not run by the GPU check; 27 MB of bundled models",
}
PYTHON_VERSION = "3.12"
# The platforms a CPython 3.12 wheel for x86_64 Linux may name: every
# manylinux tag up to glibc 2.28 (pip does not widen a given --platform).
PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
# The device machine takes 64 MiB of the working tree in all; the tree is
# about 1.3 MB, so the wheelhouse keeps well clear of it.
MAX_BYTES = 48 * 2**20
PROJECT = "ocr-inbox"


class WheelhouseError(RuntimeError):
    """Resolving, downloading or building a wheel failed, or the result is too big."""


@dataclass(frozen=True, slots=True)
class Pinned:
    name: str  # canonical (PEP 503)
    version: str


@dataclass(frozen=True, slots=True)
class Travelling:
    pinned: Pinned
    reason: str


def canonical(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution a requirement string names ("torch>=2.11,<2.12" -> "torch")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise WheelhouseError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def our_requirements(pyproject: Path, extras: Sequence[str] = EXTRAS) -> list[str]:
    """The base dependencies plus those of `extras`, less ourselves and LEFT_HOME."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        requirements += optional[extra]
    own = canonical(project["name"])
    unique: dict[str, None] = {}
    for requirement in requirements:
        name = requirement_name(requirement)
        if name != own and name not in LEFT_HOME:
            unique.setdefault(requirement.strip(), None)
    return list(unique)


def target_options() -> list[str]:
    """pip options that select CPython 3.12 binary wheels for x86_64 Linux."""
    options = [
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        "cp" + PYTHON_VERSION.replace(".", ""),
    ]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def _pip(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "is ignored" not in line]
        raise WheelhouseError(f"{what} failed ({result.returncode}):\n" + "\n".join(errors[-20:]))


def resolve(requirements: Sequence[str]) -> dict[str, Pinned]:
    """What pip would install for `requirements` on the target, read from its report."""
    with tempfile.TemporaryDirectory(prefix="ocr-inbox-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        _run(
            _pip(
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(report),
                "--target",
                str(Path(scratch) / "target"),
                *target_options(),
                *requirements,
            ),
            "resolving " + " ".join(requirements),
        )
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = (
        Pinned(canonical(item["metadata"]["name"]), item["metadata"]["version"])
        for item in installs
    )
    return {pin.name: pin for pin in pins}


def travelling(ours: dict[str, Pinned], image: dict[str, Pinned]) -> list[Travelling]:
    """What our resolution has that the image's lacks, or has at another version."""
    found = []
    for name in sorted(ours):
        pin = ours[name]
        theirs = image.get(name)
        if theirs is None:
            found.append(Travelling(pin, "not in the image"))
        elif theirs.version != pin.version:
            found.append(Travelling(pin, f"the image's set has {theirs.version}"))
    return found


def download(pins: Iterable[Pinned], destination: Path) -> None:
    """CPython 3.12 wheels of exactly these versions, without their dependencies."""
    specifiers = [f"{pin.name}=={pin.version}" for pin in pins]
    if specifiers:
        _run(
            _pip(
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(destination),
                *target_options(),
                *specifiers,
            ),
            "downloading " + " ".join(specifiers),
        )


def download_pip(destination: Path) -> None:
    """pip's own wheel (pure Python): installs the rest where the image has no pip."""
    version = importlib.metadata.version("pip")
    _run(
        _pip(
            "download",
            "--no-deps",
            "--quiet",
            "--only-binary=:all:",
            "-d",
            str(destination),
            f"pip=={version}",
        ),
        "downloading pip",
    )


def build_own_wheel(destination: Path, repo: Path = package_source.REPO) -> Path:
    """Build the ocr-inbox wheel from a copy of the package sources (see package_source)."""
    with tempfile.TemporaryDirectory(prefix="ocr-inbox-build-") as scratch:
        source = package_source.stage(Path(scratch) / "source", repo)
        _run(
            _pip("wheel", "--no-deps", "--quiet", "-w", str(destination), str(source)),
            "building the ocr-inbox wheel",
        )
    [wheel] = sorted(destination.glob("ocr_inbox-*.whl"))
    return wheel


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a wheelhouse holds; written beside the wheels as manifest.json."""

    travelling: list[Travelling]
    own_wheel: str
    source_digest: str
    wheels: list[str]
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "python": PYTHON_VERSION,
            "image_has": list(IMAGE_HAS),
            "left_home": LEFT_HOME,
            "travelling": {
                item.pinned.name: {"version": item.pinned.version, "reason": item.reason}
                for item in self.travelling
            },
            "own_wheel": self.own_wheel,
            "source_digest": self.source_digest,
            "wheels": self.wheels,
            "bytes": self.bytes,
        }

    def describe(self, destination: Path) -> str:
        """What was prepared, and the command that runs the check on the GPU machine."""
        lines = [f"{destination}: {len(self.wheels)} wheels, {self.bytes / 2**20:.1f} MiB"]
        for item in self.travelling:
            lines.append(f"  {item.pinned.name}=={item.pinned.version}  ({item.reason})")
        lines.append(f"  {self.own_wheel}  (built here)")
        for name, why in LEFT_HOME.items():
            lines.append(f"  left home: {name} ({why})")
        lines.append(
            "On the GPU machine, from the checkout's root, with this folder carried along:\n"
            "  python3 scripts/gpu_check.py          (results under $OUT when it is set)"
        )
        return "\n".join(lines)


def prepare(
    destination: Path,
    repo: Path = package_source.REPO,
    moving: list[Travelling] | None = None,
) -> Manifest:
    """Fill `destination` afresh with the travelling wheels, ours and pip; write manifest.json.

    `moving` is derived (resolve, travelling) unless given: the test suite
    passes an empty list to build a wheelhouse for a machine that has all else.
    """
    if moving is None:
        moving = travelling(resolve(our_requirements(repo / "pyproject.toml")), resolve(IMAGE_HAS))
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    download([item.pinned for item in moving], destination)
    own = build_own_wheel(destination, repo)
    download_pip(destination)
    wheels = sorted(destination.glob("*.whl"))
    manifest = Manifest(
        travelling=moving,
        own_wheel=own.name,
        source_digest=package_source.source_digest(repo),
        wheels=[path.name for path in wheels],
        bytes=sum(path.stat().st_size for path in wheels),
    )
    text = json.dumps(manifest.to_json(), indent=2) + "\n"
    (destination / "manifest.json").write_text(text, encoding="utf-8")
    if manifest.bytes > MAX_BYTES:
        raise WheelhouseError(
            f"the wheelhouse holds {manifest.bytes / 2**20:.1f} MiB, over the "
            f"{MAX_BYTES / 2**20:.0f} MiB that leave room for the working tree in the "
            "64 MiB the GPU machine takes"
        )
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path(".gpu-check/wheelhouse"), help="the wheelhouse folder"
    )
    args = parser.parse_args(argv)
    try:
        manifest = prepare(args.out)
    except WheelhouseError as error:
        print(f"gpu-wheelhouse: {error}", file=sys.stderr)
        return 1
    print(manifest.describe(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
