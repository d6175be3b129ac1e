# The README's two commands: `make test` and `make demo`. Each one creates or
# reuses .venv and installs what it needs, pinned by requirements-lock.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keras-vid-installed
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
OUTPUT_DIR ?= runs/demo

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test lint demo fashion-mnist clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c requirements-lock.txt -e ".[test,recipes]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest -q

# The demo's data: Debian's dataset-fashion-mnist package, installed when
# missing and apt is available; otherwise the demo says which files to put where.
fashion-mnist:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null \
	    && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	fi

demo: $(STAMP) fashion-mnist
	$(PY) recipes/demo.py --output_dir=$(OUTPUT_DIR)

clean:
	rm -rf $(VENV) runs .pytest_cache
