"""Which install extras the settings' chain needs, and whether they are installed.

Asked without importing anything heavy (importlib.util.find_spec finds a
package without running it), so the supervisor and `doctor` can answer on a
base install, which has no torch: a chain that names a VLM there stops at start
(exit 2) with the command that adds the extra, instead of spawning workers that
fail one after another.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from daemon.settings import Settings

# The install extra that brings an engine's packages (pyproject.toml).
ENGINE_EXTRAS: dict[str, str] = {"hf_vlm": "vlm"}

# What each extra must make importable for its engines to load. The
# distributions of pyproject.toml's vlm list, by their import names.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "vlm": ("torch", "torchvision", "transformers", "accelerate"),
}


def install_hint(extra: str) -> str:
    """The command that adds `extra`, for an installed package and for a checkout."""
    return f"pip install 'ocr-inbox[{extra}]' (in a checkout: pip install -e '.[{extra}]')"


def importable(module: str) -> bool:
    """Could `import module` find it? Nothing is imported to answer."""
    if module in sys.modules:
        # None there is Python's own way of blocking an import.
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str) -> tuple[str, ...]:
    """The import names of `extra` that are not installed (empty: the extra is here)."""
    return tuple(name for name in EXTRA_MODULES.get(extra, ()) if not importable(name))


@dataclass(frozen=True, slots=True)
class MissingExtra:
    """A model of the chain whose engine needs an extra that is not installed."""

    position: int  # 0-based, as in worker.chain[N]
    model: str
    engine: str
    extra: str
    modules: tuple[str, ...]
    chain_key: str = "worker.chain"  # or inboxes.NAME.chain: the setting that names it

    @property
    def key(self) -> str:
        return f"{self.chain_key}[{self.position}]"

    def message(self) -> str:
        return (
            f"{self.key}: model {self.model!r} (engine {self.engine}) needs "
            f"the {self.extra!r} extra, which is not installed (no {', '.join(self.modules)}): "
            f"{install_hint(self.extra)}; or take the model out of {self.chain_key}"
        )


def missing_extras(settings: Settings) -> list[MissingExtra]:
    """Every model of a chain (the daemon's, then each inbox table's own) that cannot load
    here for want of an install extra."""
    chains = [("worker.chain", tuple(settings.worker.chain))] + [
        (f"inboxes.{name}.chain", tuple(table.chain))
        for name, table in settings.inboxes.items()
        if table.chain is not None
    ]
    found = []
    for chain_key, chain in chains:
        for position, name in enumerate(chain):
            engine = settings.model(name).engine
            extra = ENGINE_EXTRAS.get(engine)
            if extra is None:
                continue
            modules = missing_modules(extra)
            if modules:
                found.append(MissingExtra(position, name, engine, extra, modules, chain_key))
    return found
