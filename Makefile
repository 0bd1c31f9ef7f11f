# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make demo   - set up, then run the main job on the embedded defaults
#   make test   - set up, then run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-spark test-fast lint format docs benchmark clean postgres

# Idempotent: re-installs only when pyproject.toml changed.
install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/churn demo

# PostgreSQL tests need a server: start the machine's PostgreSQL when we can
# (root), otherwise use CHURN_TEST_POSTGRES_URL as given. The Spark tests
# (marker `spark`, one JVM) run as a second lane alongside the rest, their
# output printed after it; exit code 5 (nothing collected) is fine for one
# lane, not for both.
test: install
	@if [ -z "$$CHURN_TEST_POSTGRES_URL" ] && [ "$$(id -u)" = "0" ] && command -v pg_ctlcluster >/dev/null 2>&1; then \
		export CHURN_TEST_POSTGRES_URL=$$(bash scripts/postgres-up.sh); \
	fi; \
	log=$$(mktemp); base=$$(mktemp -d); \
	$(BIN)/python -m pytest -q -p no:cacheprovider -m spark --basetemp=$$base/spark $(PYTEST_ARGS) >$$log 2>&1 & lane=$$!; \
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not spark" $(PYTEST_ARGS); rc=$$?; \
	wait $$lane; src=$$?; echo "--- Spark lane (pytest -m spark) ---"; cat $$log; rm -rf $$log $$base; \
	if [ $$rc -eq 5 ] && [ $$src -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; \
	[ $$rc -eq 5 ] && rc=0; [ $$src -eq 5 ] && src=0; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$src

# the Spark lane alone
test-spark: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m spark $(PYTEST_ARGS)

# ruff: lint and format check (CI runs this before the tests); `make format` fixes what it can
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: install
	$(BIN)/python -m features.catalog > docs/features.md

postgres:
	@bash scripts/postgres-up.sh

clean:
	rm -rf $(VENV) data .pytest_cache
