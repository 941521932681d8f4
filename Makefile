# One command each for the things people do (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
# The deployable set: every runtime dependency pinned with its hashes (`make lock` writes it).
LOCK := requirements.lock

.PHONY: install demo test test-dates faketime chromium lint proto proto-check bench clean lock audit

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# What `make demo` runs on: the lock's pins, hash-checked, then the package without its deps.
$(RUNTIME_STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(RUNTIME_STAMP)

# Development: the same pins plus the dev extras.
$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A node's runtime: .venv with the lock's pins (hash-checked) and creditnode (README).
install: $(RUNTIME_STAMP)

# `make demo KEEP=1` keeps the federation (and Huzhou's auditor page) running until Ctrl-C.
demo: $(RUNTIME_STAMP)
	$(PY) -m devtools.demo $(if $(KEEP),--keep)

# Tests run in parallel, one process per core up to 4 (pytest-xdist): each has its own
# PostgreSQL server, ports and files. `make test PYTEST_WORKERS=` runs them in one process.
PYTEST_WORKERS ?= --numprocesses=auto --maxprocesses=4
test: $(STAMP) faketime chromium
	$(PY) proto/generate.py --check
	$(PY) -m pytest -q $(PYTEST_WORKERS)
	$(MAKE) --no-print-directory test-dates

# The suite again at two faked dates (issue 9 §1): mid-2030 in the UTC evening (already the
# next day in China), and half past midnight on 1 January of next year in China (still
# 31 December in UTC). Nothing may pass or fail with the calendar or the time of day. The
# scale tests (marked `volume`: 100,000s of rows, memory peaks, kills) ran in the first pass;
# what they check does not read the date, and three runs of them would take make test over
# its 15 minutes.
NEXT_YEAR = $(shell echo $$(( $$(date +%Y) + 1 )))
DATE_PASS = -p no:cacheprovider -m 'not volume' $(PYTEST_WORKERS)
test-dates: $(STAMP) faketime
	TZ=UTC faketime '2030-06-01 18:00:00' $(PY) -m pytest -q $(DATE_PASS)
	TZ=Asia/Shanghai faketime '$(NEXT_YEAR)-01-01 00:30:00' $(PY) -m pytest -q $(DATE_PASS)

# Debian's chromium, for the auditor page's browser test (tests/audit/test_page_browser.py,
# Playwright with an explicit executable path): installed when missing and we are root with apt
# (CI), else that one test skips, saying so.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium is missing: the auditor page's browser test will skip"

# libfaketime (Debian package `faketime`): installed when missing and we are root with apt
# (CI), else named as what to install.
faketime:
	@command -v faketime >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime; } \
		|| { echo "make test needs faketime: install the Debian package 'faketime'"; exit 1; }

lint: $(STAMP)
	$(VENV)/bin/ruff check node adapters devtools tests bench
	$(VENV)/bin/ruff format --check node adapters devtools tests bench
	$(VENV)/bin/mypy node adapters devtools tests

proto: $(STAMP)
	$(PY) proto/generate.py

bench: $(STAMP)
	$(PY) -m bench

# Pin the runtime dependencies of pyproject.toml (dev extras excluded) for every platform.
# Pins already in the lock are kept; `make lock LOCK_FLAGS=--upgrade` moves them all on.
lock: | $(PY)
	$(PY) -m pip install --quiet 'uv>=0.5'
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--quiet --generate-hashes --custom-compile-command 'make lock' --output-file $(LOCK) $(LOCK_FLAGS)

# Known vulnerabilities in the pinned set. --strict: a pin that could not be checked (say, the
# vulnerability database is unreachable) fails the audit instead of passing as "none found".
audit: | $(PY)
	$(PY) -m pip install --quiet pip-audit
	$(VENV)/bin/pip-audit --strict --require-hashes --disable-pip -r $(LOCK)

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
