"""What goes into the outputs: the Markdown and plain text, the JSON document, the error sidecar.

The hOCR is in daemon.outputs.hocr; the searchable PDF comes finished from the
worker (it needs the input) and only its description goes into the JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import structlog

from daemon import __version__
from daemon.outputs.hocr import hocr
from daemon.page_text import page_plain_text, upright_size
from daemon.protocol import DocumentResult, Fault, Line, PageResult, SearchablePdf
from daemon.tasks import FileTask

SCHEMA_VERSION = 1
PAGE_SEPARATOR = "\n\n---\n\n"
FORM_FEED = "\f"

log = structlog.get_logger(__name__)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def markdown(result: DocumentResult) -> str:
    """The text of every page, pages separated by a horizontal rule."""
    texts = [page.text.text.strip() for page in result.pages]
    body = PAGE_SEPARATOR.join(texts).strip()
    return body + "\n" if body else ""


def plain_text(result: DocumentResult) -> str:
    """NAME.ocr.txt: each page's text without markup, pages separated by a form feed."""
    body = FORM_FEED.join(page_plain_text(page.text) for page in result.pages)
    return body + "\n" if body.strip() else ""


def _line(line: Line) -> dict[str, Any]:
    return {
        "text": line.text,
        "box": [list(point) for point in line.box] if line.box is not None else None,
        "confidence": line.confidence,
        "words": [
            {
                "text": word.text,
                "box": [list(point) for point in word.box],
                "confidence": word.confidence,
            }
            for word in line.words
        ],
    }


def _page(page: PageResult, text_layer: str | None) -> dict[str, Any]:
    text = page.text
    # Boxes are in the frame of the page as the engine turned it upright; for
    # a page scanned sideways that frame is the given image's size swapped.
    width, height = upright_size(text.details, page.width, page.height, text.rotation)
    described: dict[str, Any] = {
        "index": page.index,
        "width": width,
        "height": height,
        "rotation": text.rotation,
        "scale": round(page.scale, 4),
        "seconds": round(page.seconds, 4),
        "tokens": text.tokens,
        "text": text.text,
        "lines": [_line(line) for line in text.lines],
        "blocks": [
            {"category": block.category, "text": block.text, "box": block.box}
            for block in text.blocks
        ],
        "notes": list(page.notes),
        "details": text.details,
    }
    if text_layer is not None:
        # What this page's text layer in NAME.ocr.pdf was placed from.
        described["pdf_text_layer"] = text_layer
    return described


def _pdf(pdf: SearchablePdf) -> dict[str, Any]:
    return {
        "source": pdf.source,
        "seconds": round(pdf.seconds, 4),
        "pages_with_existing_text": [
            index for index, layer in enumerate(pdf.layers) if layer == "existing_text"
        ],
    }


def success(
    task: FileTask,
    result: DocumentResult,
    model_name: str,
    timings: dict[str, float],
    *,
    node: str | None = None,
) -> dict[str, Any]:
    """The .ocr.json document (outputs.write_success adds generator and markdown hash).

    `node`: the daemon that wrote it (state.node), so a set on a share shared
    by several hosts says which one did the work.
    """
    info = result.engine
    return {
        "schema": SCHEMA_VERSION,
        "version": __version__,
        "created_at": _now_iso(),
        "inbox": task.inbox_name,
        **({"node": node} if node is not None else {}),
        "input": {
            "name": task.name,
            "sha256": result.sha256,
            "size": result.size,
            "format": result.format,
            "pages": result.page_count,
            "pages_processed": len(result.pages),
        },
        "model": {
            "name": model_name,
            "engine": info.engine,
            "family": info.family,
            "device": info.device,
            "dtype": info.dtype,
            "attention": info.attention,
            # A model behind a server: the name the server knows it by.
            **(
                {"served_model": info.details["served_model"]}
                if "served_model" in info.details
                else {}
            ),
            "details": info.details,
        },
        "timings": {key: round(value, 4) for key, value in timings.items()},
        "fallback_trail": list(task.trail),
        "memory": [asdict(reading) for reading in result.memory],
        "notes": list(result.notes),
        "pages": [
            _page(page, _layer(result, position)) for position, page in enumerate(result.pages)
        ],
        **({"pdf": _pdf(result.pdf)} if result.pdf is not None else {}),
    }


def _layer(result: DocumentResult, position: int) -> str | None:
    if result.pdf is None or position >= len(result.pdf.layers):
        return None
    return result.pdf.layers[position]


def failure(
    task: FileTask,
    fault: Fault,
    *,
    sha256: str | None,
    model_name: str | None,
    summary: str,
    node: str | None = None,
) -> dict[str, Any]:
    """The .ocr.error.json document: what failed, why, and what was tried (and by which node)."""
    return {
        "schema": SCHEMA_VERSION,
        "version": __version__,
        "created_at": _now_iso(),
        "inbox": task.inbox_name,
        **({"node": node} if node is not None else {}),
        "input": {"name": task.name, "sha256": sha256 or task.sha256, "size": task.size},
        "error": {
            "kind": fault.kind,
            "code": fault.detail.get("code"),
            "message": fault.message,
            "summary": summary,
            "exception_type": fault.exception_type,
            "page": fault.page,
            "model": model_name,
            "detail": fault.detail,
        },
        "fallback_trail": list(task.trail),
        "retry": "the file is not retried until its content changes (or its outputs are removed and the daemon restarts)",
    }


def output_files(task: FileTask, result: DocumentResult) -> dict[str, bytes]:
    """The chosen outputs other than the JSON, as bytes, in the order they are renamed."""
    files: dict[str, bytes] = {}
    for format in task.formats:
        if format == "md":
            files["md"] = markdown(result).encode("utf-8")
        elif format == "txt":
            files["txt"] = plain_text(result).encode("utf-8")
        elif format == "hocr":
            files["hocr"] = hocr(result, task.name).encode("utf-8")
        elif format == "pdf":
            if result.pdf is None:
                # Not reached: a job for a file that wants a PDF asks the worker
                # for one. Should it happen, the JSON lists the set as written.
                log.error("output.pdf_missing", file=str(task.path))
                continue
            files["pdf"] = result.pdf.data
    return files
