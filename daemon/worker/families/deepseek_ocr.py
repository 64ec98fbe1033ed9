"""DeepSeek-OCR: Markdown with grounding, or free OCR.

Two ways these checkpoints come:
- the original ones (deepseek-ai/DeepSeek-OCR, -OCR-2) ship their code
  (`trust_remote_code`, `AutoModel`) and a tokenizer but no processor; their
  documented API is `model.infer(tokenizer, prompt, image_file, output_path,
  base_size=1024, image_size=640, crop_mode=True, save_results, eval_mode)`,
  which reads the image from a file and returns the answer with
  `eval_mode=True` (their README and modeling_deepseekocr.py). Its code
  decides the token limit and calls `.cuda()` itself, so it needs a GPU.
- transformers' own port (deepseek-community/DeepSeek-OCR-2, model_type
  `deepseek_ocr2`) takes `processor(images=..., text="<image>\\n...")` and
  `generate` like any other model (transformers docs, model_doc/deepseek_ocr2).

Prompts are the model card's: "<image>\\n<|grounding|>Convert the document to
markdown." and "<image>\\nFree OCR.". A grounded answer interleaves
`<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>` before each region's
text, boxes on a 0..999 grid over the page (DeepSeek-OCR's
run_dpsk_ocr_image.py: `re_match`, `x1 / 999 * image_width`); the Markdown is
the answer with those tags removed, as their script writes it.
"""

from __future__ import annotations

import ast
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from daemon.protocol import Block
from daemon.worker.families.base import (
    PROBE_PAGE_SIZE,
    Family,
    Generated,
    GenerationRequest,
    Parsed,
    Size,
    prepare_tokenizer,
    tokenizer_of,
)

GROUNDING = re.compile(
    r"<\|ref\|>(?P<label>.*?)<\|/ref\|><\|det\|>(?P<boxes>.*?)<\|/det\|>", re.DOTALL
)
# Equation numbers inside display math: \[ x = 1 \quad (3) \] (their clean_formula).
_EQUATION_NUMBER = re.compile(r"\\quad\s*\([^)]*\)")
_DISPLAY_MATH = re.compile(r"\\\[(.*?)\\\]", re.DOTALL)
GRID = 999.0


def _boxes(raw: str) -> list[list[float]]:
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return []
    if (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(isinstance(item, int | float) for item in value)
    ):
        value = [value]
    boxes = []
    for item in value if isinstance(value, list | tuple) else []:
        if (
            isinstance(item, list | tuple)
            and len(item) == 4
            and all(isinstance(coordinate, int | float) for coordinate in item)
        ):
            boxes.append([float(coordinate) for coordinate in item])
    return boxes


def _page_box(
    boxes: list[list[float]], page_size: Size
) -> tuple[float, float, float, float] | None:
    if not boxes:
        return None
    width, height = page_size
    x1 = min(box[0] for box in boxes) / GRID * width
    y1 = min(box[1] for box in boxes) / GRID * height
    x2 = max(box[2] for box in boxes) / GRID * width
    y2 = max(box[3] for box in boxes) / GRID * height
    return (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))


def clean_markdown(text: str) -> str:
    text = _DISPLAY_MATH.sub(
        lambda match: "\\[" + _EQUATION_NUMBER.sub("", match.group(1)).strip() + "\\]", text
    )
    text = GROUNDING.sub("", text)
    text = text.replace("<center>", "").replace("</center>", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def grounded_blocks(text: str, page_size: Size) -> tuple[Block, ...]:
    """One block per grounded region: its label, its box in page pixels, the text after it."""
    matches = list(GROUNDING.finditer(text))
    blocks = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        label = match.group("label").strip()
        body = "" if label == "image" else clean_markdown(text[match.end() : end])
        blocks.append(
            Block(category=label, text=body, box=_page_box(_boxes(match.group("boxes")), page_size))
        )
    return tuple(blocks)


class DeepseekOcrFamily(Family):
    name: ClassVar[str] = "deepseek_ocr"
    prompts: ClassVar[dict[str, str]] = {
        "markdown": "<|grounding|>Convert the document to markdown.",
        "free": "Free OCR.",
    }
    default_mode: ClassVar[str] = "markdown"
    auto_classes: ClassVar[tuple[str, ...]] = ("AutoModelForImageTextToText", "AutoModel")
    # <|ref|>/<|det|> are special tokens: keep them to read the boxes.
    keep_special_tokens: ClassVar[bool] = True

    def load_processor(self, directory: str, *, trust_remote_code: bool) -> Any:
        from transformers import AutoTokenizer

        try:
            return super().load_processor(directory, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, TypeError):
            # The original checkpoints ship a tokenizer only; their infer() does the rest.
            tokenizer = AutoTokenizer.from_pretrained(
                directory, local_files_only=True, trust_remote_code=trust_remote_code
            )
        prepare_tokenizer(tokenizer)
        return tokenizer

    def prompt_text(self, processor: Any) -> str:
        return self.prompt if "<image>" in self.prompt else f"<image>\n{self.prompt}"

    @staticmethod
    def uses_infer(model: Any, processor: Any) -> bool:
        return callable(getattr(model, "infer", None)) and not hasattr(processor, "image_processor")

    def generate(
        self,
        model: Any,
        processor: Any,
        images: Sequence[Image.Image],
        request: GenerationRequest,
    ) -> list[Generated]:
        if not self.uses_infer(model, processor):
            return super().generate(model, processor, images, request)
        import torch  # in-process only: the remote engine shares this family without torch

        tokenizer = tokenizer_of(processor)
        results = []
        with tempfile.TemporaryDirectory(prefix="ocr-inbox-deepseek-") as scratch:
            for index, image in enumerate(images):
                path = Path(scratch) / f"page-{index}.png"
                image.save(path)
                with torch.inference_mode():
                    answer = model.infer(
                        tokenizer,
                        prompt=self.prompt_text(processor),
                        image_file=str(path),
                        output_path=scratch,
                        base_size=1024,
                        image_size=640,
                        crop_mode=True,
                        save_results=False,
                        eval_mode=True,
                    )
                text = answer if isinstance(answer, str) else ""
                results.append(
                    Generated(
                        token_ids=tokenizer.encode(text, add_special_tokens=False),
                        stopped=None,  # infer() does not say whether it hit its limit
                        text=text,
                    )
                )
        return results

    def probe(self, model: Any, processor: Any, request: GenerationRequest) -> None:
        if not self.uses_infer(model, processor):
            super().probe(model, processor, request)
            return
        # infer() is the only entry point these checkpoints document.
        self.generate(model, processor, [Image.new("RGB", PROBE_PAGE_SIZE, "white")], request)

    def server_prompt(self) -> str:
        # The server places the image itself; an "<image>" in a custom prompt is not text.
        return self.prompt.replace("<image>", "").strip()

    def parse(self, text: str, page_size: Size, model_size: Size | None) -> Parsed:
        blocks = grounded_blocks(text, page_size)
        return Parsed(
            text=clean_markdown(text),
            blocks=blocks,
            details={"grounded_regions": len(blocks)} if blocks else {},
        )
