# driftloop: `make demo` and `make test` set up everything they need on a fresh machine.
# Downloads are cached in $(CACHE) (wheels, the broker's jars) and ~/.m2 (Maven), so a second
# run, or a second clone, installs offline.

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
CACHE   ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/driftloop
WHEELS  := $(CACHE)/wheels
LOCK    := requirements.lock
LOCKSUM := $(shell sha256sum $(LOCK) | cut -c1-16)
STAMP   := $(VENV)/.installed-$(LOCKSUM)

export DRIFTLOOP_CACHE_DIR ?= $(CACHE)

.PHONY: help install tools demo test up down status lint format bench settings-table clean

help:
	@echo "make demo    set up, start the local stack, run the demo, stop the stack"
	@echo "make test    set up, start real servers, run the test suite"
	@echo "make up | down | status | lint | bench | settings-table | clean"

install: $(STAMP)

# Wheels are fetched once per lock into the cache; the venv installs from there, offline.
$(WHEELS)/.complete-$(LOCKSUM): $(LOCK)
	@mkdir -p $(WHEELS)
	$(PYTHON) -m pip download -q --disable-pip-version-check -d $(WHEELS) -r $(LOCK)
	@touch $@

$(STAMP): $(WHEELS)/.complete-$(LOCKSUM) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --no-index --find-links $(WHEELS) -r $(LOCK)
	$(BIN)/pip install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# Outside tools: Java and Maven run the broker, kcat is the outside Kafka client the tests use;
# promtool, Compose, kubernetes-validate and kustomize check deploy/ (tests/deploy).
tools:
	@scripts/install-tools
	@scripts/install-deploy-tools

demo: install tools
	$(BIN)/driftloop demo

test: install tools
	$(BIN)/python -m pytest

up: install tools
	$(BIN)/driftloop up

down: install
	$(BIN)/driftloop down

status: install
	$(BIN)/driftloop status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench

# Rewrites the README's settings table from the settings classes (a test checks they agree).
settings-table: install
	$(BIN)/python -m scripts.readme_settings

clean: down
	rm -rf $(VENV) .driftloop out
