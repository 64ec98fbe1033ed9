"""dots.ocr (rednote-hilab): layout JSON or plain OCR, through the model's own code.

dots.ocr ships its modeling code (`trust_remote_code`, `AutoModelForCausalLM`
in its auto_map) and a processor derived from Qwen2.5-VL's, so the image is
resized the Qwen way and the boxes of its answer are in the resized pixels.
Prompts are the ones in rednote-hilab/dots.ocr, dots_ocr/utils/prompts.py
(`prompt_layout_all_en`, `prompt_ocr`); its demo (demo/demo_hf.py) asks with
the chat template: one user turn with the image, then the prompt.
"""

from __future__ import annotations

from typing import ClassVar

from daemon.worker.families.base import Parsed, Size
from daemon.worker.families.dots_layout import layout_from_answer
from daemon.worker.families.qwen_vl import QwenVlFamily

PROMPT_LAYOUT_ALL_EN = """Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title'].

3. Text Extraction & Formatting Rules:
    - Picture: For the 'Picture' category, the text field should be omitted.
    - Formula: Format its text as LaTeX.
    - Table: Format its text as HTML.
    - All Others (Text, Title, etc.): Format their text as Markdown.

4. Constraints:
    - The output text must be the original text from the image, with no translation.
    - All layout elements must be sorted according to human reading order.

5. Final Output: The entire output must be a single JSON object.
"""

# Plain text of the page, without page headers and footers (dots.ocr's comment on it).
PROMPT_OCR = "Extract the text content from this image."


class DotsOcrFamily(QwenVlFamily):
    name: ClassVar[str] = "dots_ocr"
    prompts: ClassVar[dict[str, str]] = {"layout": PROMPT_LAYOUT_ALL_EN, "ocr": PROMPT_OCR}
    default_mode: ClassVar[str] = "layout"
    auto_classes: ClassVar[tuple[str, ...]] = (
        "AutoModelForCausalLM",
        "AutoModelForImageTextToText",
    )
    stop_tokens: ClassVar[tuple[str, ...]] = ("<|endofassistant|>", "<|im_end|>")
    # dots.ocr's preprocessor_config.json (and MAX_PIXELS in its utils/consts.py).
    server_max_pixels: ClassVar[int] = 11_289_600

    def parse(self, text: str, page_size: Size, model_size: Size | None) -> Parsed:
        answer = text.strip()
        if self.mode == "ocr":
            return Parsed(text=answer)
        layout = layout_from_answer(answer, page_size, model_size)
        if layout is None:
            # Not JSON at all: keep what the model read rather than lose the page.
            return Parsed(text=answer, details={"layout": "unparsed"})
        return Parsed(text=layout.markdown, blocks=layout.blocks, details={"layout": layout.how})
