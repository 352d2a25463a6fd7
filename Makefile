# The two commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean chromium audit

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the package metadata changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# MovieLens 100k ships inside the recbole wheel (its licence forbids copying it here):
# install the wheel alone, without torch and its other dependencies; mlsd reads its files.
$(VENV)/.recbole: | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps recbole==1.2.1
	touch $@

demo: $(VENV)/.installed $(VENV)/.recbole
	$(BIN)/python -m mlsd.demo

test: $(VENV)/.installed $(VENV)/.recbole chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The report tests render pages in headless Chromium: install Debian's when it is missing and
# we may (root with apt-get). A failed install does not fail the tests: that one test skips.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the report tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
		echo "chromium could not be installed: the browser tests will skip"; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

# Not part of `make test`: pip-audit needs the vulnerability database online.
audit: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --local

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_corpus.py
	$(BIN)/python benchmarks/bench_reliability.py

clean:
	rm -rf $(VENV) .pytest_cache examples/*/.mlsd
