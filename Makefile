# Lantern: the two commands a newcomer needs are `make run` and `make test`.
# Both create .venv (python3 -m venv) and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
PYTEST := QT_QPA_PLATFORM=offscreen $(PY) -m pytest

.PHONY: run test test-kernel-paths test-slow test-gpu bench-gpu gpu-wheels kernels bench bench-peer bench-ui screenshots package package-test clean help

help:
	@echo "make run          start the Lantern window"
	@echo "make test         set up .venv and run the default test suite (CPU, offline)"
	@echo "make test-slow    long-running checks"
	@echo "make test-gpu     checks that need CUDA or MPS"
	@echo "make bench-gpu    GPU parity tests + batch-1 speed/memory of cuda-triton (20b, 120b shapes; needs an NVIDIA GPU)"
	@echo "make gpu-wheels   download into .whl/ the cp312 wheels tests/gpu/device_run.sh installs on a GPU machine"
	@echo "make bench        speed/memory benchmark on a random checkpoint with gpt-oss-20b shapes"
	@echo "make bench-peer   the same measurements for Lantern and llama.cpp side by side, alternating (builds .venv-peer)"
	@echo "make kernels      (re)build the native CPU kernels in place (pip install -e builds them too)"
	@echo "make bench-ui     how long the window's GUI thread stalls while a model loads, a reply streams, ..."
	@echo "make screenshots  write PNGs of the main window to screenshots/"
	@echo "make package      build the desktop bundle (PyInstaller, dist/Lantern/) and, on Debian/Ubuntu, dist/lantern_*.deb"
	@echo "make package-test build, then run the built program's and the installed .deb's --self-test (packaging/package_test.py)"

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
	$(MAKE) --no-print-directory test-kernel-paths

# The tests that run the native kernels on the path LANTERN_CPU_KERNELS picks (marker auto_path), again with
# each other path this CPU runs forced (scalar; avx2 too on an AVX-512 machine), so that one machine checks
# them all. Nothing to do when the kernels are not built or LANTERN_NO_NATIVE=1.
test-kernel-paths: $(STAMP)
	@for p in $$($(PY) -c "from engine import kernels; print(*kernels.runnable_paths()[1:])"); do \
	  echo "kernel tests again with LANTERN_CPU_KERNELS=$$p"; \
	  LANTERN_CPU_KERNELS=$$p $(PYTEST) -q -m "auto_path and not slow and not gpu" \
	    tests/engine/test_moe_kernel.py tests/engine/test_native_model.py tests/engine/test_attention_fast.py || exit 1; \
	done

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

# GPU parity (tests marked gpu, and the Triton kernel tests compiled for the GPU), then the benchmark:
# random 20b-shaped checkpoint written once (LANTERN_BENCH_CACHE), 120b built in GPU memory if it fits.
bench-gpu: $(STAMP)
	$(PYTEST) -q -m "not slow" tests/engine/test_gpu.py tests/engine/test_triton_backend.py
	$(PY) -m engine.bench.gpu --out .bench

# Wheels a GPU machine without network needs (Python 3.12, x86-64): see tests/gpu/device_run.sh.
gpu-wheels: $(STAMP)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any -d .whl -r tests/gpu/wheels.txt

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m tests.app.screenshots screenshots

# The build machine needs the system libraries of the Qt plugins it bundles (the same check as `make run`).
package: $(STAMP)
	$(PIP) install -q -e '.[package]'
	$(PY) -m app.qt_platform --build
	$(PY) -m PyInstaller --noconfirm packaging/lantern.spec
	if command -v dpkg-deb >/dev/null; then $(PY) packaging/linux/build_deb.py; \
	else echo "no dpkg-deb here: .deb not built"; fi

package-test: package
	$(PY) packaging/package_test.py --report dist/package-test.txt

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
# BENCH_PEER=avx2: the comparison an AVX2-only CPU (most laptops) would show, on any x86-64 CPU with AVX2, an
# AVX-512 one included: llama.cpp built for x86-64-v3 (AVX2, FMA, F16C, BMI2; no AVX-512, AVX-VNNI or AMX)
# into its own venv, and Lantern run with its AVX2 kernels and torch limited to AVX2 (engine.bench.peer --isa
# avx2, which also checks that both engines used what they should).
BENCH_PEER  ?= native
ifeq ($(BENCH_PEER),avx2)
PEER_VENV   := .venv-peer-avx2
PEER_ISA_CMAKE := -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
	-DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
PEER_ISA_ARGS  := --isa avx2
else
PEER_VENV   := .venv-peer
PEER_ISA_CMAKE := -DGGML_NATIVE=ON
PEER_ISA_ARGS  :=
endif
PEER_PY     := $(PEER_VENV)/bin/python
LLAMA_CPP_PY_VERSION := 0.3.36
PEER_SDIST  := $(PEER_VENV)/src/llama_cpp_python-$(LLAMA_CPP_PY_VERSION).tar.gz
PEER_SRC    := $(PEER_VENV)/src/llama_cpp_python-$(LLAMA_CPP_PY_VERSION)/vendor/llama.cpp
PEER_STAMP  := $(PEER_VENV)/.installed-stamp
PEER_CMAKE_ARGS ?= $(PEER_ISA_CMAKE) -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON \
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
# The AVX2 comparison on any x86-64 machine: make bench-peer BENCH_PEER=avx2 (builds .venv-peer-avx2 once)
bench-peer: kernels $(PEER_STAMP)
	$(PY) -m engine.bench.peer --threads 2 --llama-python $(PEER_PY) --llama-src $(PEER_SRC) --out .bench \
		$(PEER_ISA_ARGS) $(BENCH_PEER_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache
	rm -f engine/kernels/*.so engine/kernels/*.pyd engine/kernels/*.dll
