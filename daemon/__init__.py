"""ocr-inbox: a folder that is an OCR service."""

__version__ = "0.1.0"
