# Labqueue: `make run` starts everything on embedded defaults, `make test` runs the
# whole suite. Both create .venv and install the pinned requirements when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5055
DEV_ADMIN_EMAIL ?= admin@example.org
FLASK := $(BIN)/flask --app frontend

# Development machines often have no DNS: do not check that mail domains resolve.
export LABQUEUE_SECURITY_EMAIL_VALIDATOR_ARGS ?= {"check_deliverability": false}
export LABQUEUE_SITE_URL ?= http://127.0.0.1:$(PORT)
# The local runner starts pipelines with the python3 found first on the PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint format bench pipeline-images pipeline-base compose-env clean-venv lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Labqueue needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) \
		|| { echo "Could not create $(VENV). On Debian/Ubuntu: sudo apt install python3-venv"; exit 1; }

# Every package is pinned with its hashes (requirements/*.in, locked by `make lock`):
# pip installs exactly those files or nothing.
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --require-hashes
# The project itself, editable and without dependencies (they are pinned above):
# it puts the `labqueue` command in $(BIN).
INSTALL_SELF := $(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
	--editable .

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt
	$(INSTALL_SELF)
	@touch $@

# The pipelines' own libraries, for the local runner (LABQUEUE_RUNNER=local).
$(VENV)/.local: requirements.txt requirements-local.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt -r requirements-local.txt
	$(INSTALL_SELF)
	@touch $@ $(VENV)/.runtime

$(VENV)/.dev: requirements.txt requirements-local.txt requirements-dev.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt -r requirements-dev.txt
	$(INSTALL_SELF)
	@touch $@ $(VENV)/.runtime $(VENV)/.local

# Lock again after changing requirements/*.in (versions already locked are kept;
# `make lock UPGRADE=1` takes the newest each .in allows). Needs PyPI.
LOCK_VENV := .venv-lock
LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --no-emit-trusted-host \
	$(if $(UPGRADE),--upgrade)

lock:  ## pin requirements/*.in, with hashes, into requirements*.txt
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) \
		&& $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.5.2; }
	$(LOCK) -o requirements.txt requirements/runtime.in
	$(LOCK) -o requirements-local.txt requirements/local-runner.in
	$(LOCK) -o requirements-dev.txt requirements/dev.in

run: $(VENV)/.runtime $(if $(filter local,$(LABQUEUE_RUNNER)),$(VENV)/.local)  ## web app on http://127.0.0.1:$(PORT) and a Celery worker
	$(FLASK) db upgrade
	@$(FLASK) create-admin --email $(DEV_ADMIN_EMAIL)
	@$(FLASK) pipelines prepare
	@echo "Starting $(if $(LABQUEUE_CELERY_BROKER_URL),with the broker at $(LABQUEUE_CELERY_BROKER_URL),with the embedded broker) on http://127.0.0.1:$(PORT) (Ctrl-C stops both)"
	@$(FLASK) dev --port $(PORT)

test: $(VENV)/.dev  ## the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev  ## upload, extraction, execution and pipeline benchmarks (see bench/)
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.download
	$(BIN)/python -m bench.extract
	$(BIN)/python -m bench.execution
	$(BIN)/python -m bench.app_cpu
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.livelog
	$(BIN)/python -m bench.accounts
	$(BIN)/python -m bench.slurm
	$(BIN)/python -m bench.reference

pipeline-images: $(VENV)/.runtime  ## build pipeline images on a debootstrap base (root)
	$(FLASK) db upgrade
	$(FLASK) pipelines build --make-base

pipeline-base: $(VENV)/.runtime  ## only make the local Debian base image, unless it is there (root)
	$(BIN)/python -m backend.images

compose-env:  ## Docker Compose: write .env once (secrets, data root, docker group); later add only what it lacks
	@$(PYTHON) deploy/compose_env.py $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) \
		$(if $(SITE_URL),--site-url $(SITE_URL))

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/djlint frontend/templates --lint

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)
