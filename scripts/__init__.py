"""Operator scripts that are not part of the installed package (the GPU check and what it ships).

Everything here uses only the standard library, so it runs on a bare Python
before any of ocr-inbox's dependencies are installed.
"""
