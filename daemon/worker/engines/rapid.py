"""The embedded default engine: RapidOCR (PP-OCR models) on ONNX Runtime, on the CPU.

It uses only the model files that the rapidocr wheel ships, named by path, so
RapidOCR never reaches its download code. Each page goes through RapidOCR's
own steps (detect, classify 0/180 per line, recognise), called one by one so
that the page orientation can be read off the detector's boxes and the
classifier's votes in between (see daemon.worker.orientation): on an upright
page that costs nothing beyond the normal pipeline; a page found sideways or
upside down is turned upright and run again. Lines come back in reading order
(daemon.worker.reading_order).

The steps (preprocess_img, detect_and_crop, cls_and_rotate, recognize_txt,
build_final_output) are public methods of RapidOCR 3.x but not documented API;
pyproject.toml keeps rapidocr below 4, and the tests exercise every one.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from daemon.protocol import EngineInfo, Line, PageText
from daemon.settings import RapidModel
from daemon.worker.engines.base import Engine, EngineError, ModelNotFoundError, Runtime
from daemon.worker.engines.rapid_setup import (
    bundled_model_paths,
    intra_op_threads,
    quiet_rapidocr_logging,
)
from daemon.worker.engines.rapid_words import attach_words
from daemon.worker.gutters import split_at_gutters, sub_quad
from daemon.worker.orientation import (
    LineVote,
    Orientation,
    estimate_orientation,
    flip_probability,
    rotation_for,
)
from daemon.worker.reading_order import Layout, reading_order, span_box

# Turning the page upright: clockwise degrees -> PIL transpose (PIL turns counter-clockwise).
UPRIGHT_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
# Crops recognised both ways up when the 0/180 vote is too close to call.
TIEBREAK_CROPS = 6
ROW_SEPARATOR = "\t"  # between lines that share a row of a table
BLOCK_SEPARATOR = "\n\n"


@dataclass(slots=True)
class _Detection:
    """One detector pass over a page, in RapidOCR's own structures."""

    bgr: np.ndarray
    op_record: dict[str, Any]
    crops: list[np.ndarray]
    det: Any  # rapidocr TextDetOutput
    # Where each crop's ink lies along its box (fractions), once cut at gutters.
    inks: tuple[tuple[float, float], ...] | None = None


class RapidEngine(Engine):
    """RapidOCR on ONNX Runtime: CPU, float32, the models bundled with the wheel."""

    def __init__(self, name: str, model: RapidModel, runtime: Runtime) -> None:
        super().__init__(name, runtime)
        self.model = model
        self.threads = intra_op_threads(model.threads or runtime.threads)
        self._ocr: Any = None
        self._model_paths: dict[str, Path] = {}

    def load(self) -> EngineInfo:
        """Build RapidOCR from the bundled models, warm up every stage, and describe it."""
        quiet_rapidocr_logging()
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ModelNotFoundError(f"rapidocr is not installed: {exc}") from exc
        self._model_paths = bundled_model_paths()
        params: dict[str, Any] = {
            "Global.log_level": "warning",
            "Global.text_score": self.model.text_score,
            # Words (characters in CJK) with their boxes, for NAME.ocr.pdf and lines[].words[].
            "Global.return_word_box": True,
            # The page as given goes to the detector, which scales it so its
            # longer side is at most det_limit_side_len; line crops are cut from
            # the full-resolution page, which the recogniser reads best.
            "Global.max_side_len": 1_000_000,
            "Det.limit_type": "max",
            "Det.limit_side_len": self.model.det_limit_side_len,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # RapidOCR turns the arena off to save memory; without it every new
            # page size costs about a second more of detector CPU time (fresh
            # allocations), for about 200 MB less resident memory.
            "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
        }
        for stage, path in self._model_paths.items():
            params[f"{stage}.model_path"] = str(path)
        try:
            self._ocr = RapidOCR(params=params)
            quiet_rapidocr_logging()  # RapidOCR() resets its logger's level
            self._warm_up()
        except Exception as exc:
            self._ocr = None
            raise EngineError(f"RapidOCR failed to load: {exc}") from exc
        return EngineInfo(
            engine="rapid",
            model=self.name,
            device="cpu",
            dtype="float32",
            attention="none",
            details={
                "rapidocr": metadata.version("rapidocr"),
                "onnxruntime": metadata.version("onnxruntime"),
                "models": {stage.lower(): path.name for stage, path in self._model_paths.items()},
                "intra_op_threads": self.threads,
                "detect_orientation": self.model.detect_orientation,
                "det_limit_side_len": self.model.det_limit_side_len,
                "text_score": self.model.text_score,
            },
        )

    def recognize(self, pages: Sequence[Image.Image]) -> list[PageText]:
        """Recognise each page; lines in reading order.

        Boxes are in the frame of the upright page: the image as given, turned
        clockwise by `PageText.rotation` degrees (the same image when rotation
        is 0). Its size is in `details["upright_size"]`. To draw a box on the
        image as given, turn the box back counter-clockwise by `rotation`.
        """
        if self._ocr is None:
            raise EngineError("RapidEngine.recognize() called before load()")
        return [self._recognize_page(page) for page in pages]

    def close(self) -> None:
        self._ocr = None

    # --- one page -----------------------------------------------------------

    def _recognize_page(self, page: Image.Image) -> PageText:
        from rapidocr.ch_ppocr_cls import TextClsOutput
        from rapidocr.main import RapidOCRError

        image = as_rgb(page)
        details: dict[str, Any] = {}
        rotation = 0
        detection = self._detect(image)
        if detection is None:
            return blank_page(image, details)
        if self.model.detect_orientation:
            _, cls_res = self._ocr.cls_and_rotate(detection.crops)
            orientation = self._orientation(detection, cls_res.cls_res)
            rotation = orientation.rotation
            details["orientation"] = {
                "sideways_share": round(orientation.sideways_share, 3),
                "flip_share": round(orientation.flip_share, 3),
                "confident": orientation.confident,
            }
            if rotation:
                image = image.transpose(UPRIGHT_TRANSPOSE[rotation])
                detection = self._detect(image)
                if detection is None:
                    return blank_page(image, details, rotation)
        # The classifier only votes on the page's orientation; lines are read
        # as detected on the (now upright) page. It squeezes each crop into
        # 192 x 48 px, so on long lines its verdicts are near coin tosses, even
        # at 0.99: letting it turn single lines over garbled about one line in
        # ten of upright A4 pages (bench/versus_tesseract.py, docs/benchmarks.md).
        cls_res = TextClsOutput()
        detection = cut_at_gutters(detection)
        try:
            recognised = self._ocr.recognize_txt(detection.crops)
        except RapidOCRError:
            return blank_page(image, details, rotation)
        kept = self._kept_lines(recognised)
        result = self._ocr.build_final_output(
            detection.bgr, detection.det, cls_res, recognised, detection.crops, detection.op_record
        )
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None)
        scores = getattr(result, "scores", None)
        if boxes is None or texts is None or scores is None or len(texts) == 0:
            return blank_page(image, details, rotation)
        boxes = tighten(boxes, detection.inks, kept)
        assembled = assemble_page(image, boxes, texts, scores, rotation, details)
        return attach_words(
            assembled, getattr(result, "word_results", None), len(texts), image.size
        )

    def _detect(self, image: Image.Image) -> _Detection | None:
        """Run the detector; None when the page holds no text."""
        from rapidocr.main import RapidOCRError

        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        preprocessed, op_record = self._ocr.preprocess_img(bgr)
        try:
            crops, det = self._ocr.detect_and_crop(preprocessed, op_record)
        except RapidOCRError:
            return None
        return _Detection(bgr=bgr, op_record=op_record, crops=crops, det=det)

    def _kept_lines(self, recognised: Any) -> list[int] | None:
        """Indices of the recognised crops that RapidOCR's final output keeps, in order.

        It drops lines with empty text, then lines scoring under its
        text_score (rapidocr.main.RapidOCR.build_final_output).
        """
        texts, scores = getattr(recognised, "txts", None), getattr(recognised, "scores", None)
        threshold = getattr(self._ocr, "text_score", None)
        if texts is None or scores is None or threshold is None:
            return None
        return [
            index
            for index, (text, score) in enumerate(zip(texts, scores, strict=True))
            if text.strip() and score >= threshold
        ]

    def _orientation(
        self, detection: _Detection, cls_res: Sequence[tuple[str, float]]
    ) -> Orientation:
        votes = [
            LineVote(
                box=[(float(x), float(y)) for x, y in box],
                flip_probability=flip_probability(label, score),
            )
            for box, (label, score) in zip(detection.det.boxes, cls_res, strict=True)
        ]
        orientation = estimate_orientation(votes)
        # A verdict to turn the page over is checked by reading as well: on a
        # page of one or two long lines the classifier can vote "upside down"
        # at 0.95 for upright text. Upright pages, the common case, pay nothing.
        if orientation.confident and orientation.rotation not in (90, 180):
            return orientation
        flipped = self._reads_better_turned(detection.crops, orientation.voters)
        return replace(orientation, rotation=rotation_for(orientation.sideways, flipped))

    def _reads_better_turned(self, crops: Sequence[np.ndarray], voters: Sequence[int]) -> bool:
        """Settle a close 0/180 vote: do the widest crops read better turned over?"""
        sample = sorted(voters, key=lambda i: crops[i].shape[1], reverse=True)[:TIEBREAK_CROPS]
        as_is = [crops[i] for i in sample]
        turned = [np.ascontiguousarray(np.rot90(crop, 2)) for crop in as_is]
        as_is_score = statistics.fmean(self._ocr.recognize_txt(as_is).scores)
        turned_score = statistics.fmean(self._ocr.recognize_txt(turned).scores)
        return turned_score > as_is_score

    def _warm_up(self) -> None:
        """Load all three models now (RapidOCR loads them lazily) and run each once."""
        image = Image.new("RGB", (256, 64), "white")
        ImageDraw.Draw(image).text(
            (12, 16), "Warm up 123", fill="black", font=ImageFont.load_default(size=28)
        )
        detection = self._detect(image)
        crop = np.ascontiguousarray(np.asarray(image)[8:56, :, ::-1])
        crops = detection.crops if detection is not None else [crop]
        self._ocr.cls_and_rotate(crops)
        self._ocr.recognize_txt(crops)


# --- pieces without state -----------------------------------------------------


def cut_at_gutters(detection: _Detection) -> _Detection:
    """The detection with lines cut at column gutters, and where each piece's ink lies.

    The boxes stay the frames of the crops, so that RapidOCR maps the word
    positions it measures across a crop back onto the page correctly;
    `tighten` narrows them to the ink once RapidOCR is done with them.
    """
    quads = [[(float(x), float(y)) for x, y in box] for box in detection.det.boxes]
    pieces, scores = split_at_gutters(detection.crops, quads, detection.det.scores)
    frames = np.array([piece.frame for piece in pieces], dtype=np.float32)
    det = replace(detection.det, boxes=frames, scores=scores)
    crops = [piece.crop for piece in pieces]
    return replace(detection, crops=crops, det=det, inks=tuple(piece.ink for piece in pieces))


def tighten(
    boxes: Any, inks: Sequence[tuple[float, float]] | None, kept: Sequence[int] | None
) -> Any:
    """The page's line boxes narrowed to their ink: the reading order measures gutters between them.

    `kept` are the indices of the crops whose lines RapidOCR kept (it drops
    empty and low-scoring ones); when they do not pair with the boxes, the
    frames stay as they are rather than be narrowed to another line's ink.
    """
    if inks is None or kept is None or len(kept) != len(boxes):
        return boxes
    return [
        sub_quad(tuple(map(tuple, box)), *inks[index])
        for box, index in zip(boxes, kept, strict=True)
    ]


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB, whatever came in: RapidOCR reads nothing from a palette image, and
    transparent pixels must become paper (white), not black."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, "white")
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def blank_page(image: Image.Image, details: dict[str, Any], rotation: int = 0) -> PageText:
    return PageText(
        text="",
        lines=(),
        rotation=rotation,
        details={**details, "upright_size": [image.width, image.height]},
    )


def assemble_page(
    image: Image.Image,
    boxes: np.ndarray,
    texts: Sequence[str],
    scores: Sequence[float],
    rotation: int,
    details: dict[str, Any],
) -> PageText:
    """Lines in reading order, and the page text built from them."""
    quads = [[(float(x), float(y)) for x, y in box] for box in boxes]
    layout = reading_order(quads)
    lines: list[Line] = []
    block_texts: list[str] = []
    for block in layout.blocks:
        row_texts: list[str] = []
        # Cells of a table share a row, joined by a tab; lines that share one row
        # of nothing else (a running header's left and right parts) are lines.
        beside = ROW_SEPARATOR if sum(len(row) > 1 for row in block) >= 2 else "\n"
        for row in block:
            span_texts: list[str] = []
            for span in row:
                line = merged_line(layout, quads, texts, scores, span, image.size)
                lines.append(line)
                span_texts.append(line.text)
            row_texts.append(beside.join(span_texts))
        block_texts.append("\n".join(row_texts))
    return PageText(
        text=BLOCK_SEPARATOR.join(block_texts),
        lines=tuple(lines),
        rotation=rotation,
        details={
            **details,
            "upright_size": [image.width, image.height],
            "skew_degrees": round(float(np.degrees(layout.skew)), 2),
        },
    )


def merged_line(
    layout: Layout,
    quads: Sequence[Sequence[tuple[float, float]]],
    texts: Sequence[str],
    scores: Sequence[float],
    span: Sequence[int],
    size: tuple[int, int],
) -> Line:
    """One Line from the detector boxes of a span: texts joined, confidence weighted by length."""
    width, height = size
    parts = [texts[i].strip() for i in span]
    weights = [max(len(part), 1) for part in parts]
    confidence = sum(w * float(scores[i]) for w, i in zip(weights, span, strict=True)) / sum(
        weights
    )
    quad = span_box(quads, tuple(span), layout.skew)
    p0, p1, p2, p3 = (
        (round(min(max(x, 0.0), width), 1), round(min(max(y, 0.0), height), 1)) for x, y in quad
    )
    return Line(
        text=" ".join(parts),
        box=(p0, p1, p2, p3),
        confidence=round(min(max(confidence, 0.0), 1.0), 4),
    )
