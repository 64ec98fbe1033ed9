# Every target bootstraps .venv itself: a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs, two stamps, so that neither is mistaken for the other:
# BASE_STAMP is the daemon with its embedded engine and no torch (`make run`);
# STAMP is everything the suite, the linters and the benchmarks need
# (base + the vlm and test extras + mypy and ruff), which includes the base.
BASE_STAMP := $(VENV)/.installed-base
STAMP := $(VENV)/.installed
# Options for `make run`, e.g. make run ARGS="--metrics-port 9500".
ARGS ?=
# Where `make gpu-wheelhouse` puts what travels to a bare GPU machine (ignored by git).
GPU_WHEELHOUSE := .gpu-check/wheelhouse

.PHONY: run test lint typecheck bench gpu-wheelhouse gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A full install serves `make run` as well: only a base install is done here
# when the full one is missing or older than pyproject.toml.
$(BASE_STAMP): pyproject.toml | $(BIN)/python
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
		echo "make: $(STAMP) is current; it includes the base install"; \
	else \
		$(BIN)/python -m pip install --quiet -e .; \
	fi
	touch $(BASE_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(BASE_STAMP)
	mkdir -p inbox
	$(BIN)/ocr-inbox run --inbox ./inbox --state-dir ./.state $(ARGS)

# Test files run in parallel, one file per process: most tests wait on settle
# windows, deadlines and child processes rather than on the CPU, so three
# workers take half the time of one even on two cores (5.5 against 11.5
# minutes here). PYTEST_WORKERS=0 runs them in this process, one by one.
# Files are handed out in collection order, which tests/conftest.py makes
# longest first (xdist's own reordering, most tests first, left the longest
# files, which have few tests, for the end).
PYTEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check daemon harness tests bench scripts
	$(BIN)/ruff format --check daemon harness tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# (a) to (f), about 12 minutes on 2 cores; PARTS="overhead tesseract" for some,
# PARTS=tuning or PARTS=chaos for the optional ones (docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/ocr-inbox bench $(PARTS)

# The GPU check (scripts/gpu_check.py, README "Checking a GPU machine").
# gpu-wheelhouse: the wheels a bare GPU image lacks, for an offline install there.
gpu-wheelhouse: $(BASE_STAMP)
	$(BIN)/python -m scripts.gpu_wheelhouse --out $(GPU_WHEELHOUSE)

# gpu-check: the same check on a GPU box with network, in the full .venv.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --python $(BIN)/python $(ARGS)

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .gpu-check
