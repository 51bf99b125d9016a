# Every target sets up what it needs on a fresh machine: the virtualenv, the package with its
# extras, Debian packages and the local brokers the tests talk to.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A second virtualenv with the oldest OpenTelemetry release pyproject allows, for the tests that
# touch SDK internals: the core, the boundaries, the pytest plugin and the W3C/HTTP integrations.
OLDEST       := .venv-otel-oldest
OLDEST_PY    := $(OLDEST)/bin/python
OLDEST_STAMP := $(OLDEST)/.installed
OLDEST_PINS  := constraints/otel-oldest.txt
OLDEST_TESTS := tests/core tests/boundaries tests/testing \
                tests/integrations/test_w3c.py tests/integrations/test_http.py
# ddtrace and Logfire, the peers benchmarks/bench_export.py measures, kept out of the project's
# virtualenv (ddtrace patches what it finds at import).
PEERS       := .venv-bench-peers
PEERS_STAMP := $(PEERS)/.installed
PEERS_PINS  := constraints/bench-peers.txt

.PHONY: test test-otel-oldest demo bench lint format system clean screenshots docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(OLDEST_STAMP): pyproject.toml $(OLDEST_PINS)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST_PY) -m pip install -q --upgrade pip
	$(OLDEST_PY) -m pip install -q -c $(OLDEST_PINS) -e '.[serve,http]' \
		'pytest>=8' 'pytest-timeout>=2.3' fastapi flask requests aiohttp
	touch $(OLDEST_STAMP)

$(PEERS_STAMP): $(PEERS_PINS)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -r $(PEERS_PINS)
	touch $(PEERS_STAMP)

system:
	bash scripts/system.sh

# CI runs this: lint (ruff, pyright), the docs site, the suite, then the oldest OpenTelemetry.
test: $(STAMP) system lint docs
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) test-otel-oldest

test-otel-oldest: $(OLDEST_STAMP) system
	$(OLDEST_PY) -m pytest -q $(OLDEST_TESTS)

demo: $(STAMP)
	$(VENV)/bin/threadline demo $(DEMO_ARGS)

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) benchmarks/run.py

# The documentation site (MkDocs, Material theme) into site/; --strict fails on a broken link.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

screenshots: $(STAMP) system
	$(PY) scripts/screenshots.py docs/screenshots

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/pyright

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) $(OLDEST) $(PEERS) build site *.egg-info src/*.egg-info
