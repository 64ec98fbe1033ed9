"""NAME.ocr.pdf: the input's pages with an invisible, searchable text layer (built in the worker)."""
