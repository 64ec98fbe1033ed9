"""Benchmarks of ocr-inbox: figures measured side by side, printed as Markdown tables.

Run them with `ocr-inbox bench [PART ...]` (or `make bench`) from a checkout;
docs/benchmarks.md has the latest figures and says what each part measures.
They print figures and ratios and never assert on timings; tests/bench only
checks that each part runs end to end on a tiny input.
"""
