# The two set-up commands (see README.md). Each does all of its own set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP_DEMO := $(VENV)/.odkit-installed
STAMP_DEV  := $(VENV)/.odkit-dev-installed
# One pytest worker per core (at most 4: each may hold a model in memory), whole test files per worker (module
# fixtures built once); `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile

.PHONY: demo test browser lint protos bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[train]"
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(BIN)/odkit demo $(DEMO_ARGS)

# The serve page's browser test drives Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
	  echo "make: chromium could not be installed; the browser test will skip"

test: $(STAMP_DEV) browser
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python tools/gen_protos.py --check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks tools

protos: $(STAMP_DEV)
	$(BIN)/python tools/gen_protos.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
