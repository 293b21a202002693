# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install  ## the story end to end on the embedded SQLite default (no service needed)
	$(BIN)/python demo/story.py

test: install  ## the whole suite; PostgreSQL tests run when MDSTUDIO_TEST_POSTGRES_URL (or the local server) answers
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install  ## benchmarks, on the PostgreSQL of MDSTUDIO_BENCH_POSTGRES_URL (default: local)
	$(BIN)/python bench/approvals.py

clean:
	rm -rf $(VENV) .mdstudio .pytest_cache .ruff_cache .hypothesis
