"""What the tests and the benchmarks both need, in one place both may import.

Page synthesis (pages), the daemon run as a subprocess and read through its
log (driver), dropping files into an inbox (inbox, drops) and the chaos drill
(chaos). Not part of the installed package: it lives in a checkout, beside
tests/ and bench/. bench/ imports this and never tests/.
"""
