"""The names of an input's outputs, and whether a name leaves room for them.

For `inbox/scan.png`, every output is `inbox/scan.png.ocr.<format>`; the error
sidecar `scan.png.ocr.error.json` stands instead of the set when the file failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

GENERATOR = "ocr-inbox"
MARKDOWN_SUFFIX = ".ocr.md"
JSON_SUFFIX = ".ocr.json"
TEXT_SUFFIX = ".ocr.txt"
HOCR_SUFFIX = ".ocr.hocr"
PDF_SUFFIX = ".ocr.pdf"
ERROR_SUFFIX = ".ocr.error.json"
TEMP_SUFFIX = ".ocr-inbox.tmp"
FORMAT_SUFFIXES: dict[str, str] = {
    "md": MARKDOWN_SUFFIX,
    "json": JSON_SUFFIX,
    "txt": TEXT_SUFFIX,
    "hocr": HOCR_SUFFIX,
    "pdf": PDF_SUFFIX,
}
# Every name the daemon writes beside an input (never taken as an input).
OUTPUT_SUFFIXES: tuple[str, ...] = (*FORMAT_SUFFIXES.values(), ERROR_SUFFIX)
LONGEST_SUFFIX = max(OUTPUT_SUFFIXES, key=len)

OutputFailure = Literal["permission", "no_space", "not_ours", "io"]


class OutputError(Exception):
    """An output could not be written; `reason` says why (it labels a metric)."""

    def __init__(self, reason: OutputFailure, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.reason: OutputFailure = reason
        self.path = path


@dataclass(frozen=True, slots=True)
class OutputPaths:
    """Where an input's outputs go: beside it, or in a mirrored tree under an output folder."""

    source: Path
    # With an inbox's output_dir: that folder (`root`) and the input's own
    # folder mirrored below it (`folder`). None: beside the input.
    root: Path | None = None
    folder: Path | None = None

    @classmethod
    def beside(cls, source: Path) -> OutputPaths:
        return cls(source)

    @classmethod
    def mirrored(cls, source: Path, inbox: Path, output_dir: Path) -> OutputPaths:
        """For inbox/a/b/scan.png: output_dir/a/b/scan.png.ocr.<format>."""
        relative = source.parent.relative_to(inbox)
        return cls(source, output_dir, output_dir / relative)

    @property
    def directory(self) -> Path:
        """The folder the outputs are written in."""
        return self.folder if self.folder is not None else self.source.parent

    def of(self, format: str) -> Path:
        """NAME.ocr.<format> for one of FORMAT_SUFFIXES."""
        return self.directory / (self.source.name + FORMAT_SUFFIXES[format])

    @property
    def markdown(self) -> Path:
        return self.of("md")

    @property
    def json(self) -> Path:
        return self.of("json")

    @property
    def error(self) -> Path:
        return self.directory / (self.source.name + ERROR_SUFFIX)


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the folder's filesystem allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255  # NAME_MAX of Linux filesystems


def name_problem(source: Path) -> tuple[str, str] | None:
    """(code, message) when outputs cannot be named after `source`; None when they can.

    Our outputs add up to len(LONGEST_SUFFIX) bytes to the input's name, so a
    name within that many bytes of the filesystem's limit cannot have them
    beside it. A name that is not valid UTF-8 cannot be recorded in the journal
    or the JSON.
    """
    name = source.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "name_not_utf8",
            f"the file name '{os.fsencode(name).decode('utf-8', 'backslashreplace')}' is not valid"
            " UTF-8; rename the file",
        )
    limit = name_max(source.parent)
    added = len(LONGEST_SUFFIX)
    longest = len(os.fsencode(name)) + added
    if longest > limit:
        return (
            "name_too_long",
            f"the file name is {longest - added} bytes; outputs add"
            f" {added} and this filesystem allows {limit}: rename the file to at"
            f" most {limit - added} bytes",
        )
    return None
