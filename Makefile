# Two commands do all set-up on a fresh machine with Python 3.11 and pip:
#   make demo   installs everything and runs the main job on embedded defaults
#   make test   installs everything and runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: install demo test test-slow lint browser bench clean

install: $(VENV)/.installed

# torch is pinned to the CPU build first, so that no dependency pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $@

demo: install
	$(PY) -m convssl demo --out $(OUT)

# Browser tests drive Debian's chromium; install it when missing (needs root, as on CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium missing: browser tests will be skipped (apt-get install chromium)"; fi; }

test: install browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

# The long checks the default run leaves out (pyproject's `slow` marker).
test-slow: install browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check convssl tests scripts

# Speed: the timing assertions of the suite (`benchmark` marker), then the prepare benchmark.
bench: install browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m benchmark
	$(PY) scripts/benchmark_prepare.py

clean:
	rm -rf $(VENV) runs .pytest_cache
