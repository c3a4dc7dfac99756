# Lantern: the two commands a newcomer needs are `make run` and `make test`.
# Both create .venv (python3 -m venv) and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
PYTEST := QT_QPA_PLATFORM=offscreen $(PY) -m pytest

.PHONY: run test test-slow test-gpu kernels bench bench-peer bench-ui screenshots package clean help

help:
	@echo "make run          start the Lantern window"
	@echo "make test         set up .venv and run the default test suite (CPU, offline)"
	@echo "make test-slow    long-running checks"
	@echo "make test-gpu     checks that need CUDA or MPS"
	@echo "make bench        speed/memory benchmark on a random checkpoint with gpt-oss-20b shapes"
	@echo "make bench-peer   the same measurements for Lantern and llama.cpp side by side, alternating (builds .venv-peer)"
	@echo "make kernels      (re)build the native CPU kernels in place (pip install -e builds them too)"
	@echo "make bench-ui     how long the window's GUI thread stalls while a model loads, a reply streams, ..."
	@echo "make screenshots  write PNGs of the main window to screenshots/"
	@echo "make package      build a desktop bundle with PyInstaller (packaging/lantern.spec)"

$(STAMP): pyproject.toml setup.py $(wildcard engine/kernels/*.cpp engine/kernels/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# OpenAI's reference model (test oracle): declares Python >= 3.12 but its torch path runs on 3.11.
	$(PIP) install -q --no-deps --ignore-requires-python gpt-oss==0.0.9
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m app

test: $(STAMP)
	$(PYTEST) -q -m "not slow and not gpu"

test-slow: $(STAMP)
	$(PYTEST) -q -m "slow"

test-gpu: $(STAMP)
	$(PYTEST) -q -m "gpu"

# The GUI thread's worst gap and its gaps over 16/50 ms while a model loads, a reply streams and finishes,
# a 50k-character message is sent, a 500-message chat opens, 2,000 chats are searched (real window,
# offscreen; the tiny random checkpoint is written once to $TMPDIR/lantern-bench-ui). BENCH_UI_ARGS=--repeat 3
BENCH_UI_ARGS ?=
bench-ui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m tests.app.ui_bench $(BENCH_UI_ARGS)

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m tests.app.screenshots screenshots

package: $(STAMP)
	$(PIP) install -q -e '.[package]'
	$(PY) -m PyInstaller --noconfirm --clean packaging/lantern.spec

# Native CPU kernels (optional: without a compiler the engine runs its pure-torch path).
kernels: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# Writes a ~13.8 GB random gpt-oss-20b-shaped checkpoint once (~/.cache/lantern-bench), then measures
# load time, memory, prefill/decode speed and read bandwidth with 2 threads; JSON goes to .bench/.
bench: kernels
	$(PY) -m engine.bench --threads 2 --out .bench

# llama.cpp as the yardstick: llama-cpp-python built from its source package (CPU only, tuned to this CPU)
# into its own venv, .venv-peer/, so the test venv is never touched. The sdist also carries llama.cpp's
# convert_hf_to_gguf.py, which turns the random checkpoint into a GGUF (experts MXFP4, the rest bf16).
# The build takes a long while on a small machine; it runs once, at the lowest CPU priority.
PEER_VENV   := .venv-peer
PEER_PY     := $(PEER_VENV)/bin/python
LLAMA_CPP_PY_VERSION := 0.3.36
PEER_SDIST  := $(PEER_VENV)/src/llama_cpp_python-$(LLAMA_CPP_PY_VERSION).tar.gz
PEER_STAMP  := $(PEER_VENV)/.installed-stamp
PEER_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON \
	-DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
BENCH_PEER_ARGS ?=

$(PEER_STAMP):
	test -x $(PEER_PY) || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_PY) -m pip install -q --upgrade pip
	mkdir -p $(PEER_VENV)/src
	test -f $(PEER_SDIST) || $(PEER_PY) -m pip download -q --no-deps --no-binary :all: \
		llama-cpp-python==$(LLAMA_CPP_PY_VERSION) -d $(PEER_VENV)/src
	tar xzf $(PEER_SDIST) -C $(PEER_VENV)/src
	CMAKE_ARGS="$(PEER_CMAKE_ARGS)" nice -n 19 $(PEER_PY) -m pip install -q $(PEER_SDIST)
	touch $(PEER_STAMP)

# Lantern and llama.cpp on the same random gpt-oss-20b-shaped checkpoint (the one `make bench` writes,
# converted once to GGUF next to it), alternating A B A B in one run; prints both columns and the ratios,
# JSON to .bench/bench-peer-*.json. Needs ~22 GiB free RAM for the llama.cpp runs at full size.
# Quick pipeline check on a 2-layer checkpoint: make bench-peer BENCH_PEER_ARGS=--small
bench-peer: kernels $(PEER_STAMP)
	$(PY) -m engine.bench.peer --threads 2 --llama-python $(PEER_PY) --out .bench $(BENCH_PEER_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache
	rm -f engine/kernels/*.so engine/kernels/*.pyd
