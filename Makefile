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

test: lint tools
	$(PY) -m pytest -q

# Debian's prometheus (promtool) and docker-compose for tests/ops, installed only when
# missing. Installing may start the package's service on port 9090: it is stopped again,
# since the tests run their own Prometheus on a free port. Without apt-get, say so and
# go on: tests/ops then fail naming the missing tool.
.PHONY: tools
tools:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null \
	    && command -v docker-compose >/dev/null; then :; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "make tools: no apt-get; install prometheus and docker-compose yourself" >&2; \
	else \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends prometheus docker-compose \
	  && { [ ! -x /etc/init.d/prometheus ] || /etc/init.d/prometheus stop >/dev/null 2>&1 || true; }; \
	fi

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
	$(PY) -m bench

# Re-pin every dependency from a fresh resolve of pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet ".[dev]"
	.lockenv/bin/pip freeze --exclude herald > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .herald-data .pytest_cache .mypy_cache .ruff_cache
