"""Any other image-text-to-text model: its chat template, one image, a plain OCR prompt.

Good enough for models that follow the transformers conventions (a processor
with a chat template, `AutoModelForImageTextToText`); anything that needs its
own prompt format deserves its own family module.
"""

from __future__ import annotations

from typing import ClassVar

from daemon.worker.families.base import Family


class GenericFamily(Family):
    name: ClassVar[str] = "generic"
