# Two commands on a fresh machine:
#   make demo   - install (first time) and run the main job on the shipped sample data
#   make test   - install (first time) and run the whole test suite (fast + slow)
# Everything is installed into .venv in this directory; nothing else is needed but python3.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/beamwright run data_processing --summary-json beamwright-output/data_processing/summary.json

test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "slow or not slow" -q

# The lineage graph is checked in a real headless Chromium (Debian's package). Installed when
# missing and we are root (CI, the dev machines); otherwise that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the browser rendering test will be skipped"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/beamwright bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf beamwright-output
