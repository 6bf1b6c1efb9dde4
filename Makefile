# Two entry points; each installs what it needs first (pip resolves torch and torchvision together).
PY ?= python3

.PHONY: install main test test-fast benchmark

.install.stamp: pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

install: .install.stamp

main: install
	$(PY) -m pyro_ebnn.run main

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

benchmark: install
	$(PY) experiments/benchmark_step.py
