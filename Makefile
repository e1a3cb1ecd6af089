# The developer interface: `make` lists the targets. `make test` and `make demo` work as the
# first command on a fresh clone. Installing writes to stderr only, so `make invoke` prints
# nothing but the result on stdout.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
PORT   ?= 8081
SOURCES := layers functions tests bench examples

.DEFAULT_GOAL := help
.PHONY: help dev test demo lint fmt fmt-check migrate seed invoke start-api sam-env openapi classifier-model report status report-screenshot bench clean

help: ## list the targets
	@echo "usage: make TARGET  (the same commands: .venv/bin/flywheel --help)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(firstword $(MAKEFILE_LIST))

$(STAMP): pyproject.toml layers/flywheel/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@echo "installing into $(VENV) (once; again when pyproject.toml changes)" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e '.[dev]' >&2
	@touch $(STAMP)

dev: $(STAMP) ## create .venv and install the package with its dev tools
	@echo "ready: $(BIN)/flywheel, $(BIN)/python" >&2

test: $(STAMP) ## run the whole test suite (real PostgreSQL, moto); PYTEST_ARGS="-k name" to narrow it
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

demo: $(STAMP) ## run the main job end to end locally (about a minute)
	@$(BIN)/flywheel demo

lint: $(STAMP) ## ruff (checks and formatting) and mypy over the package, the handlers, the tests, the benchmarks and the examples
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

fmt: $(STAMP) ## format the code (ruff format)
	$(BIN)/ruff format $(SOURCES)

fmt-check: $(STAMP) ## check the formatting without changing anything
	$(BIN)/ruff format --check $(SOURCES)

migrate: $(STAMP) ## apply pending migrations to the local (or DATABASE_URL) database; prints what it applied
	@$(BIN)/flywheel migrate

seed: $(STAMP) ## create the records the sample events refer to (fixed ids)
	@$(BIN)/flywheel seed

invoke: $(STAMP) ## invoke a function: make invoke FN=MessagesFunction EVENT=events/messages_get.json (JSON on stdout)
	@test -n "$(FN)" || (echo "usage: make invoke FN=<LogicalId> EVENT=events/<file>.json" >&2 && exit 2)
	@$(BIN)/flywheel invoke $(FN) $(if $(EVENT),-e $(EVENT),)

start-api: $(STAMP) ## serve the API and the local stack on http://127.0.0.1:8081 (PORT=... for another port)
	@$(BIN)/flywheel start-api --port $(PORT)

sam-env: $(STAMP) ## write env.json for sam local invoke/start-api --env-vars
	@$(BIN)/flywheel sam-env

report: $(STAMP) ## write one organisation's HTML report: make report ORG=<org_id> [OUT=report.html]
	@test -n "$(ORG)" || (echo "usage: make report ORG=<org_id> [OUT=report.html]" >&2 && exit 2)
	@$(BIN)/flywheel report --org $(ORG) --out $(or $(OUT),report.html)

status: $(STAMP) ## the flywheel at a glance in the terminal (ORG=<org_id> for one organisation)
	@$(BIN)/flywheel status $(if $(ORG),--org $(ORG),)

# the README's picture: the demo's report as headless Chromium draws it (apt-get install chromium)
report-screenshot: $(STAMP) ## redraw docs/report.png from the demo's report (needs chromium)
	$(BIN)/flywheel demo
	$(BIN)/python -m flywheel.local.screenshot .flywheel/demo-report.html docs/report.png

openapi: $(STAMP) ## write openapi.json, the API's OpenAPI document
	$(BIN)/python -m flywheel.local.openapi openapi.json

# deterministic; CORPUS=extra.jsonl adds e.g. exported corrections to tests/data/replies_labelled.jsonl
classifier-model: $(STAMP) ## retrain the offline reply classifier and re-export its weights into the layer
	$(BIN)/python -m flywheel.local.train_classifier $(if $(CORPUS),--corpus tests/data/replies_labelled.jsonl --corpus $(CORPUS),)

bench: $(STAMP) ## run the benchmarks (each prints its headline as its last line)
	@for b in bench/[!_]*.py; do echo "== $$b"; nice $(BIN)/python $$b || exit 1; done

clean: ## remove .venv and the local state (.flywheel: embedded database, local secrets)
	rm -rf $(VENV) .flywheel .pytest_cache .mypy_cache .ruff_cache env.json
