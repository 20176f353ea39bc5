# Two commands on a fresh machine:
#   make demo   - install (first time) and run the main job on the shipped sample data
#   make test   - install (first time) and run the whole test suite (fast + slow)
# Everything is installed into .venv in this directory; nothing else is needed but python3.

PYTHON ?= python3
# Two environments: the product as users install it (make demo, make bench: the broker, http,
# postgres and documents extras the benches and the README's templates use; no test tools, no
# Dataflow client), and the product with its
# test extra (make test). Installing the gcp extra
# (Beam's Dataflow runner, needed by the translation tests) makes `import apache_beam` load
# Beam's GCP modules, ~0.5 s more for every run: the demo must not pay for the tests' needs.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_VENV ?= .venv-test
TEST_BIN := $(TEST_VENV)/bin
TEST_STAMP := $(TEST_VENV)/.installed

.PHONY: install demo test test-fast bench lint clean browser postgres redis tesseract

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[broker,http,postgres,documents]'
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_BIN)/python -m pip install --quiet --upgrade pip
	$(TEST_BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)  # .venv as make demo installs it, without running anything

demo: $(STAMP)
	$(BIN)/beamwright run data_processing --summary-json beamwright-output/data_processing/summary.json

test: $(TEST_STAMP) browser postgres redis tesseract
	$(TEST_BIN)/lint-imports
	$(TEST_BIN)/python -m pytest -m "slow or not slow" -q --durations=30

# The lineage graph is checked in a real headless Chromium (Debian's package). Installed when
# missing and we are root (CI, the dev machines); otherwise that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the browser rendering test will be skipped"

# The http step's shared-cache test starts a throw-away redis-server (Debian's package) on
# loopback. Installed when missing and we are root; otherwise that test is skipped.
redis:
	@command -v redis-server >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) ; } || \
	  echo "redis-server not installed: the http step's Redis cache test will be skipped"

# The document source reads scans and images with Tesseract OCR (Debian's tesseract-ocr).
# Installed when missing and we are root; otherwise the OCR tests are skipped.
tesseract:
	@command -v tesseract >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null) ; } || \
	  echo "tesseract-ocr not installed: the OCR tests will be skipped"

# The postgres lookup tests start a throw-away PostgreSQL from Debian's server binaries
# (initdb, postgres). Installed when missing and we are root; otherwise those tests are skipped.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ; } || \
	  echo "postgresql not installed: the postgres lookup tests will be skipped"

test-fast: $(TEST_STAMP)
	$(TEST_BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/beamwright bench

lint: $(TEST_STAMP)
	$(TEST_BIN)/ruff check .
	$(TEST_BIN)/lint-imports

clean:
	rm -rf beamwright-output
