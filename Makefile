# Lantern: the two commands a newcomer needs are `make run` and `make test`.
# Both create .venv (python3 -m venv) and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
PYTEST := QT_QPA_PLATFORM=offscreen $(PY) -m pytest

.PHONY: run test test-slow test-gpu kernels bench bench-peer screenshots package clean help

help:
	@echo "make run          start the Lantern window"
	@echo "make test         set up .venv and run the default test suite (CPU, offline)"
	@echo "make test-slow    long-running checks"
	@echo "make test-gpu     checks that need CUDA or MPS"
	@echo "make bench        speed/memory benchmark on a random checkpoint with gpt-oss-20b shapes"
	@echo "make kernels      (re)build the native CPU kernels in place (pip install -e builds them too)"
	@echo "make screenshots  write PNGs of the main window to screenshots/"
	@echo "make package      build a desktop bundle with PyInstaller (packaging/lantern.spec)"

$(STAMP): pyproject.toml
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

clean:
	rm -rf build dist *.egg-info .pytest_cache
	rm -f engine/kernels/*.so engine/kernels/*.pyd
