"""Outputs: what is written beside an input, and how it is written (atomically, never over a file that is not ours)."""
