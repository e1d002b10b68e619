# Quick start: `make run` serves both functions on localhost (a demo when nothing is configured;
# `make run PORT=8090` for another port); `make test` runs the linters (`make lint`) and then the
# whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080
# what mypy checks: all of it, tests included (pyproject.toml: the settings, untyped packages)
MYPY_PATHS := shared realtime bulk deploy tests bench soak

.PHONY: install run lint test clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "make: creating $(VENV) and installing requirements-dev.txt into it (first run only; about a minute or two)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@echo "make: dependencies installed"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m deploy.local --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(MYPY_PATHS)

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
