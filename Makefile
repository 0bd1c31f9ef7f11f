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
# (marker `spark`) run in the same process, on one local Spark session: a
# second lane beside the rest was slower on 2 cores (17 min against 15). The
# 25 slowest tests are listed at the end, to keep an eye on the suite's time.
test: install
	@if [ -z "$$CHURN_TEST_POSTGRES_URL" ] && [ "$$(id -u)" = "0" ] && command -v pg_ctlcluster >/dev/null 2>&1; then \
		export CHURN_TEST_POSTGRES_URL=$$(bash scripts/postgres-up.sh); \
	fi; \
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# the Spark tests alone
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
