# Two entry points for a fresh machine (README, docs/setup.md): `make repro` and `make test`.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup repro test test-all params doctor lock server serve exp sweep exp-show restore-data

setup:            ## Debian packages + .venv from uv.lock (the project editable, dev extras); idempotent
	bash scripts/setup.sh

# docs/dependencies.md: edit pyproject.toml, then `make lock` and commit both files.
LOCK_ARGS ?=
lock:             ## re-resolve uv.lock from pyproject.toml (LOCK_ARGS=--upgrade: newest allowed versions)
	bash scripts/setup.sh --uv-only
	UV_PYTHON_DOWNLOADS=never .tools/uv/bin/uv lock --python python3.11 $(LOCK_ARGS)

repro: setup      ## set up, then run the whole pipeline on the embedded default dataset
	dvc repro

# Two pytest-xdist workers, one file each at a time (a module's tests share its project copy, in order);
# the built small project is shared between them, OpenMP waits passively (tests/conftest.py).
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test:             ## set up (Chromium too), then run the default test suite (what CI runs): slow end-to-end tests included
	bash scripts/setup.sh --with-browser
	python -m pytest -m "not gpu and not extended" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-all:         ## everything except GPU tests: slow and extended ones included
	bash scripts/setup.sh --with-browser
	python -m pytest -m "not gpu" -o addopts="" --timeout=3600

# `dvc exp show` in about 140 columns: the experiment, its data, method and rank k, and the headline results
# (pretrain's kNN top-1, linear top-1, SYSU-30k mAP, COCO box AP of the pretrained backbone). EXP_ARGS adds
# options (e.g. EXP_ARGS="-A" for every commit); EXP_COLUMNS replaces the column regex.
EXP_COLUMNS ?= ^(Experiment|data\.name|method|loss\.variant|loss\.k|seed|knn_top1|pretrained\.top1|pretrained\.mAP|pretrained\.bbox\.AP)$$
EXP_ARGS ?=
exp-show:         ## dvc exp show, the readable view: method, key params, headline results (fits 140 columns)
	dvc exp show --no-pager --drop '.*' --keep '$(EXP_COLUMNS)' $(EXP_ARGS)

restore-data:     ## damaged generated data: set them aside (data/damaged/), regenerate them pristine, re-run what follows
	python -m pipeline.data restore
	dvc repro

params:           ## rewrite params.yaml from conf/ after editing a config group
	python -m pipeline.config compose

doctor:           ## what is missing or misconfigured (venv, packages, Debian libraries, DVC, params, Prefect, disk)
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m pipeline.doctor; \
	else echo "FAIL environment: .venv does not exist: run make setup"; exit 1; fi

# Prefect (docs/orchestration.md): state in .prefect/ unless PREFECT_HOME is set.
export PREFECT_HOME ?= $(CURDIR)/.prefect
PREFECT_PORT ?= 4200
CRON ?= 0 3 * * *
SWEEP ?= loss.k=1,2,3,5

server:           ## local Prefect server (SQLite in .prefect/) on http://127.0.0.1:$(PREFECT_PORT)
	prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

serve:            ## serve the pipeline on the CRON schedule against the local server (Ctrl+C stops)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} python -m flows.serve --cron "$(CRON)"

exp:              ## `dvc exp run $(ARGS)` guarded: refuses over edited dvc-add data, restores params on failure
	python -m flows.exp $(ARGS)

sweep:            ## run the SWEEP as DVC experiments through Prefect against the local server
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} python -m flows.sweep -S '$(SWEEP)'

# The learning-efficiency study (docs/study.md): DVC experiments, then the report.
# STUDY_ARGS narrows or lengthens it, e.g. STUDY_ARGS="--epochs 12" (give report the same options).
# The default budget: 8 epochs per run (312 steps in the 10-class world, 360 in the 144-class one), both worlds
# (docs/study.md); `touch .dvc/tmp/study-stop` stops it after the current run, `make study` resumes.
STUDY_ARGS ?= --epochs 8
.PHONY: study report

study:            ## run the study's missing runs as DVC experiments (pretrain only; hours, resumable)
	python -m pipeline.study run $(STUDY_ARGS)

report:           ## reports/efficiency.md + PNGs from the study's recorded DVC experiments
	python -m pipeline.study report $(STUDY_ARGS)
