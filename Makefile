# Meterline: `make run` starts the back office, `make test` runs the tests. See README.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: install run test lint migrate demo demo-screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

migrate: install
	$(MANAGE) migrate --noinput

demo: migrate
	$(MANAGE) sync_billing_roles
	$(MANAGE) demo_catalog
	$(MANAGE) demo_activity
	$(MANAGE) demo_admin

run: demo
	@echo "Meterline: billing home at http://127.0.0.1:8000/  API docs at http://127.0.0.1:8000/v0/docs  (Ctrl-C stops all)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

CHROMIUM_PATH ?= /usr/bin/chromium

test: install
	@test -x "$(CHROMIUM_PATH)" || echo "NOTE: Chromium not found at $(CHROMIUM_PATH): browser tests will be SKIPPED (apt-get install chromium)."
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis

# README screenshots of the demo catalog (temp SQLite, runserver, Debian's Chromium): docs/screenshots/*.png;
# the receivables ones (docs/screenshots/receivables-*.png) come from the receivables browser journey.
demo-screenshots: install
	@test -x "$(CHROMIUM_PATH)" || { echo "Chromium not found at $(CHROMIUM_PATH) (apt-get install chromium)"; exit 1; }
	CHROMIUM_PATH="$(CHROMIUM_PATH)" $(BIN)/python scripts/demo_screenshots.py
	env -u DATABASE_URL CHROMIUM_PATH="$(CHROMIUM_PATH)" METERLINE_README_SCREENSHOTS=1 \
		$(BIN)/pytest tests/browser/test_receivables_journey.py -p no:cacheprovider -q
