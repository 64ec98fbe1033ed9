# Every target bootstraps .venv itself: a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p inbox
	$(BIN)/ocr-inbox run --inbox ./inbox --state-dir ./.state

# Test files run in parallel, one file per process: most tests wait on settle
# windows, deadlines and child processes rather than on the CPU, so three
# workers take half the time of one even on two cores (5.5 against 11.5
# minutes here). PYTEST_WORKERS=0 runs them in this process, one by one.
PYTEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check daemon harness tests bench
	$(BIN)/ruff format --check daemon harness tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# (a) to (f), about 12 minutes on 2 cores; PARTS="overhead tesseract" for some,
# PARTS=tuning or PARTS=chaos for the optional ones (docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/ocr-inbox bench $(PARTS)

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache
