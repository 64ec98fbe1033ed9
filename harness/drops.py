"""Small distinct input files, dropped into an inbox the way careful tools write them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import pages
from harness.driver import base_settings

TINY = pages.render_page(("tiny",), width=200, height=120, font_px=20, margin=10)


def faulty_settings(
    inbox: Path, state: Path, chain: dict[str, dict[str, Any]] | None = None, **model: Any
) -> dict[str, Any]:
    """Test settings whose chain is the fault-injection engine: one model "fake", or `chain`."""
    models = chain or {"fake": {"engine": "faulty", **model}}
    settings = base_settings(inbox, state, worker={"chain": list(models)})
    settings["models"] = {name: {"engine": "faulty", **values} for name, values in models.items()}
    return settings


def _distinct(seed: int, mark: int = 7) -> Any:
    image = TINY.copy()
    image.putpixel((0, 0), (seed % 256, (seed // 256) % 256, mark))
    return image


def png_bytes(seed: int, mark: int = 7) -> bytes:
    """A small PNG, distinct per seed (and per `mark`: no two test modules share a hash)."""
    return pages.png_bytes(_distinct(seed, mark))


def place(path: Path, write: Callable[[Path], object]) -> Path:
    """Let `write` create the file under a hidden temp name beside `path`, then rename it there.

    A file written in place can be seen half-written by a watcher with a short
    settle window on a loaded machine; a rename makes it appear whole.
    """
    temp = path.with_name(f".{path.name}.part")
    write(temp)
    temp.rename(path)
    return path


def drop_png(path: Path, seed: int = 0) -> Path:
    """A one-page PNG written under a hidden temp name and renamed into place."""
    return place(path, lambda temp: pages.save_png(_distinct(seed), temp))


def drop_pdf(path: Path, page_count: int, seed: int = 0) -> Path:
    """A PDF of `page_count` small pages, written the same way."""
    images = [_distinct(seed + index) for index in range(page_count)]
    return place(path, lambda temp: pages.save_pdf(images, temp))
