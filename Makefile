# Two entry points for a fresh machine (see README): `make repro` and `make test`.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup repro test test-all params clean-venv

setup:            ## Debian packages + .venv with the project (editable, dev extras); idempotent
	bash scripts/setup.sh

repro: setup      ## set up, then run the whole pipeline on the embedded default dataset
	dvc repro

test: setup       ## set up, then run the default test suite (what CI runs)
	python -m pytest -m "not gpu" $(PYTEST_ARGS)

test-all: setup   ## everything except GPU tests, slow ones included
	python -m pytest -m "not gpu" -o addopts="" --timeout=3600

params:           ## rewrite params.yaml from conf/ after editing a config group
	python -m pipeline.config compose
