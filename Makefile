# The developer interface. `make test` and `make demo` work as the first command on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: dev test demo lint invoke start-api bench migrate openapi clean classifier-model report status report-screenshot

$(STAMP): pyproject.toml layers/flywheel/requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/flywheel demo

lint: $(STAMP)
	$(BIN)/ruff check layers functions tests bench
	$(BIN)/mypy

# retrain the offline reply classifier on tests/data/replies_labelled.jsonl (plus CORPUS=extra.jsonl,
# e.g. exported corrections) and re-export its weights into the layer; deterministic
classifier-model: $(STAMP)
	$(BIN)/python -m flywheel.local.train_classifier $(if $(CORPUS),--corpus tests/data/replies_labelled.jsonl --corpus $(CORPUS),)

migrate: $(STAMP)
	$(BIN)/flywheel migrate

invoke: $(STAMP)
	@test -n "$(FN)" || (echo "usage: make invoke FN=<LogicalId> EVENT=events/<file>.json" && exit 2)
	$(BIN)/flywheel invoke $(FN) $(if $(EVENT),-e $(EVENT),)

start-api: $(STAMP)
	$(BIN)/flywheel start-api --port $(or $(PORT),8081)

report: $(STAMP)
	@test -n "$(ORG)" || (echo "usage: make report ORG=<org_id> [OUT=report.html]" && exit 2)
	$(BIN)/flywheel report --org $(ORG) --out $(or $(OUT),report.html)

status: $(STAMP)
	$(BIN)/flywheel status $(if $(ORG),--org $(ORG),)

# the README's picture: the demo's report as headless Chromium draws it (apt-get install chromium)
report-screenshot: $(STAMP)
	$(BIN)/flywheel demo
	$(BIN)/python -m flywheel.local.screenshot .flywheel/demo-report.html docs/report.png

openapi: $(STAMP)
	$(BIN)/python -m flywheel.local.openapi openapi.json

bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .flywheel .pytest_cache .mypy_cache .ruff_cache
