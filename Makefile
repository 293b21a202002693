# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

MDSTUDIO_HOME ?= $(CURDIR)/.mdstudio
DEV_ENV := MDSTUDIO_HOME=$(MDSTUDIO_HOME) \
	DAGSTER_HOME=$${DAGSTER_HOME:-$(MDSTUDIO_HOME)/dagster} \
	MDSTUDIO_DATABASE_URL=$${MDSTUDIO_DATABASE_URL:-sqlite:///$(MDSTUDIO_HOME)/mdstudio.db}

.PHONY: install lock demo dev test docs lint bench mutation clean instance-config image drill

install: $(INSTALLED)

# Exactly the tested set: every package pinned, with its hashes, in requirements-dev.lock (the
# runtime's requirements.lock plus the `dev` extra); the project itself goes on top, without
# dependencies of its own choosing.
$(INSTALLED): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The lock files, resolved from PyPI alone for Linux x86_64 / CPython 3.11 (this machine's and the
# image's platform); the machine's own pip settings (local wheel folders, extra indexes) are left
# out so the hashes are PyPI's. tests/unit/test_dependencies.py fails when pyproject.toml and the
# lock files disagree.
LOCK_ENV := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
PIP_COMPILE := $(LOCK_ENV) $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --no-strip-extras \
	--no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
	--resolver backtracking --upgrade

lock:  ## refresh requirements.lock and requirements-dev.lock from pyproject.toml
	test -x $(BIN)/pip-compile || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
		$(BIN)/pip install --quiet --disable-pip-version-check 'pip-tools>=7.4'; }
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra dev --output-file requirements-dev.lock pyproject.toml

demo: install  ## the story end to end on the embedded SQLite default (no service needed)
	$(BIN)/python demo/story.py

# The instance (its dagster.yaml and its storage) is made once before `dagster dev` starts the
# webserver and the daemon: two processes making the storage of a fresh SQLite home at once
# corrupt it (mdstudio_pipelines/lib/instance.py).
dev: install  ## Dagster UI (http://127.0.0.1:3000) and daemon; PostgreSQL when MDSTUDIO_DAGSTER_STORAGE_URL is set
	$(DEV_ENV) $(BIN)/python -m mdstudio_pipelines.lib.instance dagster.yaml
	$(DEV_ENV) $(BIN)/mdstudio db upgrade
	$(DEV_ENV) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

# The queue, retry and monitoring blocks of dagster.yaml, deploy/compose/dagster.yaml and
# deploy/helm/values.yaml, written from mdstudio_pipelines/lib/instance.py (the one place they are
# set); tests/unit/test_instance_config.py fails when a committed block differs.
instance-config: install  ## regenerate the committed instance configs' generated blocks
	$(BIN)/python -m mdstudio_pipelines.lib.instance --committed

# One image for every role (Dockerfile). Without a registry (as here) the base is built from
# Debian's packages with debootstrap, and the packages come from a wheelhouse made on the host
# from requirements.lock (tools/image.sh).
IMAGE ?= mdstudio:latest
BASE ?= python:3.11-slim-bookworm

image: install  ## the image for every role; starts dockerd when it is not running
	IMAGE=$(IMAGE) BASE=$(BASE) tools/image.sh

# The Docker drills (tests/deploy, marked `docker`; `make test` leaves them out): the image, and
# the Compose deployment in containers broken on purpose. Each drill's figures go to
# build/drills/results.txt, printed at the end. MDSTUDIO_REQUIRE_DOCKER=1 makes a missing Docker
# a failure (CI).
drill: install  ## the image and the failure drills in Docker (about 15 minutes)
	rm -f build/drills/results.txt
	$(BIN)/pytest -m docker -p no:randomly tests/deploy
	cat build/drills/results.txt

test: install docs  ## the whole suite; PostgreSQL tests run when MDSTUDIO_TEST_POSTGRES_URL (or the local server) answers, browser tests when /usr/bin/chromium exists
	$(BIN)/pytest

# The documentation site (mkdocs.yml, docs/), built strictly: a broken link or anchor, or a page
# left out of the navigation, fails it and so fails `make test`.
docs: install  ## build the documentation site into build/site
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: install
	$(BIN)/ruff check .

bench: install  ## benchmarks, on the PostgreSQL of MDSTUDIO_BENCH_POSTGRES_URL (default: local)
	$(BIN)/python bench/approvals.py
	$(BIN)/python bench/change_sets.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/events_polling.py
	$(BIN)/python bench/list_memory.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/profile.py
	$(BIN)/python bench/regex.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/lineage.py
	$(BIN)/python bench/console.py

# Mutation testing of the core's logic (mdstudio_core/domain, service_layer, adapters/repositories/;
# [tool.mutmut] in pyproject.toml), not part of `make test`. A fresh run each time (mutmut's cache
# would keep the verdicts of mutants whose tests changed). Each mutant runs only the tests that call
# the function it mutates, on the SQLite half of the suite: PostgreSQL is made unreachable and the
# `postgres` tests deselected. Left out because they are mostly Dagster (daemons, in-process runs,
# the code location), seconds to minutes per mutant: tests/pipelines and tests/store/test_definitions.py
# (the core paths they cover have Dagster-free tests of their own); and tests/http/test_fuzz.py
# (schemathesis: over half the run's time, for what the route tests already check) and
# tests/http/test_serve.py and tests/console/test_browser.py (their server is a subprocess, which
# never loads a mutant). Niced, 2 workers: the machine is shared. Then tools/mutation_score.py
# prints killed/total and fails below 85% or when a survivor is not listed in
# tests/MUTATION_SURVIVORS.md.
MUTATION_ENV := MDSTUDIO_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:1/postgres \
	MDSTUDIO_REQUIRE_POSTGRES=0 HYPOTHESIS_PROFILE=ci
MUTATION_CHILDREN ?= 2

mutation: install  ## the mutation score (over an hour on 2 shared, busy cores: 71 min for 6288 mutants)
	rm -rf mutants
	$(MUTATION_ENV) nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN)
	$(BIN)/python tools/mutation_score.py

clean:
	rm -rf $(VENV) .mdstudio .pytest_cache .ruff_cache .hypothesis mutants
