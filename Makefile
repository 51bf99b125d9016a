# Every target sets up what it needs on a fresh machine: the virtualenv, the package with its
# extras, Debian packages and the local brokers the tests talk to.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint format system clean screenshots docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

system:
	bash scripts/system.sh

test: $(STAMP) system docs
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/threadline demo $(DEMO_ARGS)

bench: $(STAMP)
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
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
