# Everything a fresh machine needs: `make demo` runs Herald end to end on the
# embedded broker, `make test` runs lint, types and every test tier.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit soak bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/herald demo

test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests bench
	$(VENV)/bin/ruff format --check pipeline tests bench
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# The crash and restart checks at length (CI runs the short version in `make test`).
soak: $(STAMP)
	HERALD_SOAK=1 $(PY) -m pytest -q -s tests/stream/test_crash.py tests/stream/test_recovery.py

bench: $(STAMP)
	$(PY) -m bench.throughput

# Re-pin every dependency from a fresh resolve of pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet ".[dev]"
	.lockenv/bin/pip freeze --exclude herald > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .herald-data .pytest_cache .mypy_cache .ruff_cache
