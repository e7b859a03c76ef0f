# AXIS backend — two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BACKEND := $(CURDIR)/backend
# A setting's value in backend/.env (the server reads that file too; the environment wins over it), read as
# python-dotenv reads it: an optional `export `, the value in quotes as it is, else up to a ` # comment`.
dotenv = $(shell sed -n -E 's/^[[:space:]]*(export[[:space:]]+)?$(1)[[:space:]]*=[[:space:]]*//p' $(BACKEND)/.env \
	2>/dev/null | tail -n 1 | sed -E -e "s/^'([^']*)'.*/\1/;t" -e 's/^"([^"]*)".*/\1/;t' -e 's/[[:space:]]+\#.*//' \
	-e 's/[[:space:]]+$$//')
# The server reads $AXIS_CUSTOM_DIR (environment, else backend/.env; relative paths from backend/,
# where it runs), else ./custom.
AXIS_CUSTOM_DIR ?= $(call dotenv,AXIS_CUSTOM_DIR)
# `make run`: bind address and example loading from the environment, else backend/.env, else the defaults.
HOST := $(or $(HOST),$(call dotenv,HOST),127.0.0.1)
PORT := $(or $(PORT),$(call dotenv,PORT),8500)
AXIS_LOAD_EXAMPLES := $(or $(AXIS_LOAD_EXAMPLES),$(call dotenv,AXIS_LOAD_EXAMPLES),true)
CUSTOM := $(if $(AXIS_CUSTOM_DIR),$(if $(filter /%,$(AXIS_CUSTOM_DIR)),$(AXIS_CUSTOM_DIR),$(BACKEND)/$(AXIS_CUSTOM_DIR)),$(CURDIR)/custom)

.PHONY: run test lint typecheck install install-dev setup bench examples clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) $(BACKEND)/pyproject.toml
	$(PIP) install --quiet -e "$(BACKEND)"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed $(BACKEND)/pyproject.toml
	$(PIP) install --quiet -e "$(BACKEND)[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## setup: copy config templates into $AXIS_CUSTOM_DIR/config/ (default custom/config/) when absent
setup:
	@mkdir -p $(CUSTOM)/config $(CUSTOM)/branding $(CUSTOM)/agents
	@for f in $(BACKEND)/config/*.yaml.example; do \
		dest=$(CUSTOM)/config/$$(basename $$f .example); \
		[ -f $$dest ] || { cp $$f $$dest; echo "created $$dest"; }; \
	done

## run: install, copy templates, start the server on 127.0.0.1:8500 with example data loaded
run: install setup
	cd $(BACKEND) && AXIS_LOAD_EXAMPLES=$(AXIS_LOAD_EXAMPLES) $(VENV)/bin/uvicorn --factory app.main:create_app \
		--host $(HOST) --port $(PORT) --workers 1 --timeout-graceful-shutdown 10

lint: install-dev
	cd $(BACKEND) && $(VENV)/bin/ruff check app tests bench && $(VENV)/bin/ruff format --check app tests bench

typecheck: install-dev
	cd $(BACKEND) && $(VENV)/bin/mypy

## test: install dev extras, run ruff, mypy and the pytest suite
test: install-dev
	cd $(BACKEND) && $(VENV)/bin/ruff check app tests bench && $(VENV)/bin/ruff format --check app tests bench
	cd $(BACKEND) && $(VENV)/bin/mypy
	cd $(BACKEND) && $(VENV)/bin/pytest -q -p no:cacheprovider

## examples: regenerate backend/sample_data/ (deterministic)
examples: install
	cd $(BACKEND) && $(PY) -m app.services.example_data --out sample_data

## bench: run the benchmarks (not part of the test suite)
bench: install-dev
	cd $(BACKEND) && for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(BACKEND)/data
