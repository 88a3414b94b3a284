# Every target bootstraps what it needs from a machine with python3 and make:
# a private copy of uv, then the locked environment in .venv.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin

# Prefect offline and quiet: no telemetry, and time enough for a fresh
# database to migrate on a small machine.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint bench clean

# The demo uses a Prefect home of its own and no PREFECT_API_URL, so its runs
# never reach a Prefect server or Cloud profile the user has configured.
demo: $(VENV)/.synced
	home=$$(mktemp -d) && env -u PREFECT_API_URL -u PREFECT_PROFILE PREFECT_HOME=$$home \
		$(BIN)/python -m flows.demo; status=$$?; rm -rf $$home; exit $$status

test: $(VENV)/.synced
	$(BIN)/python -m pytest

PYTHON_SOURCES := replicate_tasks flows tests bench

bench: $(VENV)/.synced
	$(BIN)/python -m bench.webhooks

lint: $(VENV)/.synced
	$(BIN)/ruff check $(PYTHON_SOURCES)
	$(BIN)/ruff format --check $(PYTHON_SOURCES)
	$(BIN)/mypy

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

clean:
	rm -rf .uv $(VENV) .pytest_cache .mypy_cache .ruff_cache
