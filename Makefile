# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

MDSTUDIO_HOME ?= $(CURDIR)/.mdstudio
DEV_ENV := MDSTUDIO_HOME=$(MDSTUDIO_HOME) \
	DAGSTER_HOME=$${DAGSTER_HOME:-$(MDSTUDIO_HOME)/dagster} \
	MDSTUDIO_DATABASE_URL=$${MDSTUDIO_DATABASE_URL:-sqlite:///$(MDSTUDIO_HOME)/mdstudio.db}

.PHONY: install demo dev test lint bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install  ## the story end to end on the embedded SQLite default (no service needed)
	$(BIN)/python demo/story.py

dev: install  ## Dagster UI (http://127.0.0.1:3000) and daemon; PostgreSQL when MDSTUDIO_DAGSTER_STORAGE_URL is set
	$(DEV_ENV) $(BIN)/python -m mdstudio_pipelines.instance dagster.yaml
	$(DEV_ENV) $(BIN)/mdstudio db upgrade
	$(DEV_ENV) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

test: install  ## the whole suite; PostgreSQL tests run when MDSTUDIO_TEST_POSTGRES_URL (or the local server) answers, browser tests when /usr/bin/chromium exists
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install  ## benchmarks, on the PostgreSQL of MDSTUDIO_BENCH_POSTGRES_URL (default: local)
	$(BIN)/python bench/approvals.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/events_polling.py
	$(BIN)/python bench/list_memory.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/profile.py
	$(BIN)/python bench/regex.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/lineage.py
	$(BIN)/python bench/console.py

clean:
	rm -rf $(VENV) .mdstudio .pytest_cache .ruff_cache .hypothesis
