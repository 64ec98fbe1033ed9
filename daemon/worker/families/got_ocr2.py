"""GOT-OCR 2.0 (transformers' GotOcr2): the processor writes the prompt itself.

The checkpoint has no chat template; `GotOcr2Processor` builds
"<|im_start|>system ... <img><imgpad>*256</img>\\nOCR: <|im_end|><|im_start|>assistant\\n"
for each image, and "OCR with format: " when asked for formatted output
(LaTeX / Markdown-like). The answer ends with <|im_end|>, which the
transformers docs pass as a stop string, so it is a stop token here.
Every image is resized to the vision tower's fixed 1024x1024 input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from daemon.worker.families.base import Family, FamilyError, GenerationRequest


class GotOcr2Family(Family):
    name: ClassVar[str] = "got_ocr2"
    # The prompt text is the processor's; the mode picks plain or formatted OCR.
    prompts: ClassVar[dict[str, str]] = {"plain": "OCR: ", "format": "OCR with format: "}
    default_mode: ClassVar[str] = "plain"
    auto_classes: ClassVar[tuple[str, ...]] = ("AutoModelForImageTextToText",)
    stop_tokens: ClassVar[tuple[str, ...]] = ("<|im_end|>",)

    def __init__(self, mode: str | None = None, prompt: str | None = None) -> None:
        if prompt is not None:
            raise FamilyError(
                "got_ocr2 writes its own prompt; leave `prompt` unset and choose "
                "mode = 'plain' or 'format'"
            )
        super().__init__(mode, None)

    def build_inputs(
        self, processor: Any, images: Sequence[Image.Image], request: GenerationRequest
    ) -> Any:
        return processor(
            images=list(images),
            format=self.mode == "format",
            padding=True,
            return_tensors="pt",
        )
