"""Setting the embedded engine up: its threads, the models its wheel ships, its logging.

Nothing here reads a page; the engine (rapid.py) calls these once, at load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from daemon.cpus import usable_cpus
from daemon.worker.engines.base import ModelNotFoundError

# RapidOCR logs through this logger, at INFO and in colour, with its own handler.
RAPIDOCR_LOGGER = "RapidOCR"
STAGES = ("Det", "Cls", "Rec")


def intra_op_threads(requested: int) -> int:
    """ONNX Runtime intra-op threads: the request, or the CPUs this process may use.

    RapidOCR silently ignores a value above os.cpu_count(), so it is capped.
    """
    wanted = requested if requested > 0 else usable_cpus()
    return max(1, min(wanted, os.cpu_count() or wanted))


def bundled_model_paths() -> dict[str, Path]:
    """The det/cls/rec model files of RapidOCR's default configuration, in its wheel.

    The names come from RapidOCR's own model table, so they follow the wheel's
    defaults; a missing file is an error here rather than a download later.
    """
    import rapidocr
    from rapidocr.inference_engine.base import FileInfo, InferSession
    from rapidocr.main import DEFAULT_CFG_PATH
    from rapidocr.utils.parse_parameters import ParseParams

    models_dir = Path(rapidocr.__file__).resolve().parent / "models"
    config = ParseParams.load(DEFAULT_CFG_PATH)
    paths: dict[str, Path] = {}
    for stage in STAGES:
        section = config[stage]
        url = InferSession.get_model_url(
            FileInfo(
                engine_type=section.engine_type,
                ocr_version=section.ocr_version,
                task_type=section.task_type,
                lang_type=section.lang_type,
                model_type=section.model_type,
            )
        )["model_dir"]
        path = models_dir / Path(str(url)).name
        if not path.is_file():
            raise ModelNotFoundError(f"RapidOCR {stage} model {path} is missing; downloads are off")
        paths[stage] = path
    return paths


def quiet_rapidocr_logging() -> None:
    """Keep RapidOCR's warnings, in the daemon's log format; drop its INFO chatter and colours."""
    rapid_logger = logging.getLogger(RAPIDOCR_LOGGER)
    rapid_logger.setLevel(logging.WARNING)
    for handler in list(rapid_logger.handlers):
        rapid_logger.removeHandler(handler)
    rapid_logger.propagate = True
