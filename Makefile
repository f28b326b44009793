# streamline: the two README commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The `streamline` command (streamline/cli.py), installed into the venv by `install`.
STREAMLINE := $(VENV)/bin/streamline
INSTALLED := $(VENV)/.installed

# Fragments (mk/*.mk) add their own targets and append to TEST_PREREQS.
TEST_PREREQS :=
BENCH_PREREQS :=
-include mk/*.mk

.PHONY: help install lint test bench simulation clean

help:
	@echo "make demo   - the full pipeline on the embedded emulator (load, process, verify, teardown)"
	@echo "make test   - the whole suite (ruff + pytest); AWS_ENDPOINT_URL=... targets a running LocalStack"
	@echo "make bench  - benchmarks, one JSON object per line"
	@echo "make simulation - the processor under random faults, 5000 examples (SIMULATION_EXAMPLES=N)"
	@echo "make chaos  - the pipeline under injected faults, 100000 events checked (CHAOS_ARGS=...)"
	@echo "make infra-up / infra-down - apply / destroy the Terraform stack against AWS_ENDPOINT_URL"
	@echo "demo, bench, chaos and infra-* run $(STREAMLINE): \`$(STREAMLINE) --help\`, docs/cli.md"

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(INSTALLED)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint $(TEST_PREREQS)
	$(PY) -m pytest -q tests

# The processor's fault simulation with a large example budget (make test runs 150).
SIMULATION_EXAMPLES ?= 5000
simulation: install
	SIMULATION_EXAMPLES=$(SIMULATION_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider \
		tests/processor/test_processor_simulation.py --hypothesis-show-statistics

bench: install $(BENCH_PREREQS)
	$(STREAMLINE) bench

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .emulator
