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

# The tests that use no TensorFlow API run again on JAX and PyTorch, each in its
# own session (KERAS_BACKEND is read at import) and with TensorFlow, tfds and
# keras-tuner made unimportable, as where only keras-vid's core is installed.
# tests/backends/ compares whole training runs across the three backends.
# test_pairing reads only the models' graphs, so one of the two suffices.
PORTABLE_TESTS := tests/transfer \
	tests/test_methods.py tests/test_regressors.py tests/test_taps.py \
	tests/test_tf.py
WITHOUT_TF := KERAS_VID_WITHOUT_TENSORFLOW=1
# pytest-xdist workers. Most tests are single-threaded Python and graph
# tracing, so two workers use CI's two cores; each holds its own TensorFlow,
# so more cost memory. A file stays on one worker: its module fixtures (a
# trained teacher) are built once.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: lint
	$(VENV)/bin/pytest -q --durations=15 $(XDIST)
	KERAS_BACKEND=torch $(WITHOUT_TF) $(VENV)/bin/pytest -q $(PORTABLE_TESTS) tests/test_pairing.py
	KERAS_BACKEND=jax $(WITHOUT_TF) $(VENV)/bin/pytest -q $(XDIST) $(PORTABLE_TESTS)

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
