#!/usr/bin/env bash
# One call on the GPU machine (Python 3.12, torch 2.11 + CUDA 13, Triton 3.6, nvcc; no network): GPU parity
# tests, then `engine.bench.gpu` (20b from a random checkpoint written there, 120b built in GPU memory).
# Needs the wheels of tests/gpu/wheels.txt in .whl/ (`make gpu-wheels` here; carried, as .whl is git-ignored).
# Everything it prints also lands in $OUT (parity.txt, bench.txt, bench-gpu-*.json, versions.txt).
# The whole run stays under 10 minutes: each stage has its own time limit.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-.bench}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

{ nvidia-smi || true; "$PY" -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name(0))"; } 2>&1 | tee "$OUT/versions.txt"

# the image's torch and triton, plus the carried wheels in .gpu-site (pip if the image has it, else the
# wheels are unpacked as they are: every one of them is importable that way)
SITE="$PWD/.gpu-site"
rm -rf "$SITE"
grep -v '^gpt-oss' tests/gpu/wheels.txt > "$OUT/requirements.txt"
if "$PY" -m pip --version > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --find-links .whl --target "$SITE" -r "$OUT/requirements.txt" 2>&1 | tail -5
    "$PY" -m pip install -q --no-index --find-links .whl --target "$SITE" --no-deps \
        "$(grep '^gpt-oss' tests/gpu/wheels.txt)" 2>&1 | tail -5
else
    for w in .whl/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
fi
export PYTHONPATH="$PWD:$SITE"
# native CPU kernels (the CPU half of an experts split, and the CPU side of the comparisons); optional
timeout 150 "$PY" setup.py -q build_ext --inplace > "$OUT/build.txt" 2>&1 \
    || echo "native CPU kernels not built (see build.txt); the CPU path runs pure torch" | tee -a "$OUT/build.txt"

echo "== parity (GPU tests, Triton kernels compiled) ==" | tee "$OUT/parity.txt"
timeout 200 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
    tests/engine/test_gpu.py tests/engine/test_triton_backend.py tests/engine/test_backends.py 2>&1 | tee -a "$OUT/parity.txt"

echo "== bench ==" | tee "$OUT/bench.txt"
timeout 330 "$PY" -m engine.bench.gpu --out "$OUT" --cache-dir /tmp/lantern-bench 2>&1 | tee -a "$OUT/bench.txt"
