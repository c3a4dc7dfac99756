"""The native kernels' SIMD paths against their own scalar path, outside Python (tests/native/kernel_harness.cpp).

The harness is one C++ file that includes engine/kernels/mxfp4_moe.cpp (without LK_PYTHON_MODULE), feeds
random inputs (packed MXFP4 bytes, scales 118..130 plus a few 0/1/253/254, bf16 activations) to
lk_moe_experts, lk_linear_bf16 and lk_attn_decode, and checks the project's criterion (bf16: >= 97 %
bit-identical, the rest within one bf16 step or the cancellation floor; fp32: summation order only).

- On this machine (x86-64): the best path (AVX-512 BF16 where the CPU has it) against scalar, which proves
  the harness on hardware; with --perturb every case must fail (the comparisons can fail).
- Cross-compiled for AArch64 and run under qemu-user when `aarch64-linux-gnu-g++` and `qemu-aarch64` are
  installed (`apt-get install g++-aarch64-linux-gnu qemu-user`): the NEON path against scalar. Speed under
  emulation means nothing; only results are checked.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "native" / "kernel_harness.cpp"
KERNELS = ROOT / "engine" / "kernels" / "mxfp4_moe.cpp"
# setup.py's flags (fp contraction off keeps the scalar path's roundings as written).
FLAGS = ["-O2", "-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-pthread"]
CROSS, QEMU = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
NATIVE = shutil.which("g++") or shutil.which("clang++")

needs_native = pytest.mark.skipif(NATIVE is None, reason="no host C++ compiler")
needs_cross = pytest.mark.skipif(CROSS is None or QEMU is None,
                                 reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt: g++-aarch64-linux-gnu qemu-user)")


def _build(compiler: str, out: Path, extra: list[str]) -> Path:
    subprocess.run([compiler, *FLAGS, *extra, str(HARNESS), "-o", str(out)], check=True, capture_output=True,
                   timeout=300)
    return out


def _run(cmd: list[str], timeout: int) -> tuple[int, str, dict[str, str]]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    head = dict(re.findall(r"(\w+)=(\S+)", proc.stdout.splitlines()[0])) if proc.stdout else {}
    return proc.returncode, proc.stdout, head


def _cases(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("CASE ")]


def _assert_meaningful(stdout: str) -> None:
    """Every case ran and passed, and the MoE outputs are mostly finite (so 'identical' means something)."""
    cases = _cases(stdout)
    assert len(cases) >= 16, stdout
    assert all(line.endswith("PASS") for line in cases), stdout
    for line in cases:
        n = int(re.search(r"n=(\d+)", line).group(1))
        special = re.search(r"inf/nan=(\d+)", line)
        if special is not None:
            assert int(special.group(1)) <= 0.1 * n, line
    assert stdout.rstrip().splitlines()[-1].startswith("RESULT PASS"), stdout


@pytest.fixture(scope="module")
def native_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(NATIVE, tmp_path_factory.mktemp("harness") / "harness", [])


@pytest.fixture(scope="module")
def neon_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(CROSS, tmp_path_factory.mktemp("harness-arm") / "harness", ["-static"])


@needs_native
def test_native_harness_best_path_matches_scalar(native_harness: Path) -> None:
    # Scales 253/254 are left out here: the AVX-512 path scales per-lane partial sums, which overflow to
    # +inf and -inf (NaN) where the scalar path's block total stays finite (reported; NEON sums first).
    rc, out, head = _run([str(native_harness), "--no-huge-scales"], timeout=120)
    assert rc == 0, out
    _assert_meaningful(out)
    if platform.machine() in ("x86_64", "AMD64"):
        assert head["best_path"] in ("1", "2", "3")
    elif platform.machine() in ("aarch64", "arm64"):
        assert head["best_path"] == "4"


@needs_native
def test_native_harness_can_fail(native_harness: Path) -> None:
    """Negative control: one activation of the fast path's input changed -> every comparison fails."""
    rc, out, _ = _run([str(native_harness), "--no-huge-scales", "--perturb"], timeout=120)
    assert rc == 1, out
    cases = _cases(out)
    assert len(cases) >= 16 and all(line.endswith("FAIL") for line in cases), out


@needs_native
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_native_harness_avx2_path_matches_scalar(native_harness: Path) -> None:
    """The AVX2 path (forced with --path 3, also on AVX-512 machines) against scalar, and its negative control."""
    rc, out, head = _run([str(native_harness), "--no-huge-scales", "--path", "3"], timeout=120)
    if rc == 3:
        pytest.skip("CPU lacks AVX2/FMA")
    assert rc == 0 and head["best_path"] == "3", out
    _assert_meaningful(out)
    rc, out, _ = _run([str(native_harness), "--no-huge-scales", "--path", "3", "--perturb"], timeout=120)
    assert rc == 1 and all(line.endswith("FAIL") for line in _cases(out)), out


@needs_cross
def test_neon_path_matches_scalar_under_qemu(neon_harness: Path) -> None:
    rc, out, head = _run([QEMU, str(neon_harness)], timeout=300)
    assert head.get("best_path") == "4", out  # NEON really ran (not scalar against scalar)
    assert rc == 0, out
    _assert_meaningful(out)


@pytest.mark.slow
@needs_cross
def test_neon_full_sizes_and_negative_control_under_qemu(neon_harness: Path) -> None:
    """All sizes of the brief (MoE D = I = 2880 at T = 1, 5, 40; ~2-3 min under qemu), then --perturb."""
    rc, out, head = _run([QEMU, str(neon_harness), "--size", "full"], timeout=900)
    assert head.get("best_path") == "4" and rc == 0, out
    _assert_meaningful(out)
    rc, out, _ = _run([QEMU, str(neon_harness), "--perturb"], timeout=300)
    assert rc == 1 and all(line.endswith("FAIL") for line in _cases(out)), out


@needs_cross
def test_kernels_compile_warning_free_for_aarch64() -> None:
    cmd = [CROSS, "-O3", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(KERNELS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.skipif(shutil.which("clang++") is None or CROSS is None,
                    reason="needs clang++ and the aarch64 GNU headers")
def test_kernels_compile_warning_free_with_clang_for_aarch64() -> None:
    cmd = ["clang++", "--target=aarch64-linux-gnu", "-O3", "-std=c++17", "-Wall", "-Wextra", "-Werror",
           "-fsyntax-only", str(KERNELS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
