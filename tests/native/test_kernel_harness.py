"""The native kernels' SIMD paths against their own scalar path, outside Python (tests/native/kernel_harness.cpp).

The harness is a client of the kernel library: it includes only lantern_kernels.h and links the library,
built here from setup.py's sources and flags (engine/kernels/toolchain.py). It feeds random inputs (packed
MXFP4 bytes, scales 118..130 plus a few 0/1/253/254, bf16 activations) to lk_moe_experts, lk_mxfp4_rows,
lk_linear_bf16 and lk_attn_decode and checks the project's criterion (bf16: >= 97 % bit-identical, the rest
within one bf16 step or the cancellation floor; fp32: summation order only).

- This machine (x86-64): the best path (AVX-512 BF16 where the CPU has it) and the AVX2 path against scalar;
  with --perturb every case must fail (the comparisons can fail).
- AArch64 under qemu-user (`apt-get install g++-aarch64-linux-gnu qemu-user`): the NEON path.
- Windows under Wine (`apt-get install g++-mingw-w64-x86-64 wine64`): the DLL setup.py builds on Windows
  (MinGW-w64, posix threads, runtime linked in), with a harness.exe linked against it, every x86 path.
Speed under emulation means nothing; only results are checked. Each check skips, with the reason, when its
tools are missing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.kernels import toolchain

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "native" / "kernel_harness.cpp"
KERNELS = toolchain.KERNELS_DIR
HARNESS_FLAGS = ["-O2", "-std=c++17", f"-I{KERNELS}"]
CROSS, QEMU = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"
NATIVE = shutil.which("g++") or shutil.which("clang++")
MINGW = shutil.which("x86_64-w64-mingw32-g++-posix")
WINE = shutil.which("wine64") or next((p for p in ("/usr/lib/wine/wine64",) if os.access(p, os.X_OK)), None)
X86 = platform.machine() in ("x86_64", "AMD64")

needs_native = pytest.mark.skipif(NATIVE is None, reason="no host C++ compiler")
needs_cross = pytest.mark.skipif(CROSS is None or QEMU is None,
                                 reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt: g++-aarch64-linux-gnu qemu-user)")
needs_wine = pytest.mark.skipif(
    MINGW is None or WINE is None or not X86,
    reason="needs x86_64-w64-mingw32-g++-posix and wine64 on x86-64 (apt: g++-mingw-w64-x86-64 wine64)")


def _harness_for(cxx: str, out_dir: Path, lib_cmd: list[str], link: list[str], exe: str = "harness") -> Path:
    """Build the kernel library with `lib_cmd`, then the harness linked against it (`link`)."""
    toolchain.run(lib_cmd)
    out = out_dir / exe
    toolchain.run([cxx, *HARNESS_FLAGS, str(HARNESS), *link, "-o", str(out)])
    return out


def _run(cmd: list[str], timeout: int, env: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    stdout = proc.stdout.replace("\r\n", "\n")
    head = dict(re.findall(r"(\w+)=(\S+)", stdout.splitlines()[0])) if stdout else {}
    return proc.returncode, stdout + proc.stderr[-2000:], head


def _cases(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("CASE ")]


def _assert_meaningful(stdout: str) -> None:
    """Every case ran and passed, and the MoE outputs are mostly finite (so 'identical' means something)."""
    cases = _cases(stdout)
    assert len(cases) >= 21, stdout
    # SKIP: lk_attn_decode on a path without an attention kernel (an x86 CPU without AVX2 runs scalar)
    assert all(line.endswith(("PASS", "SKIP")) for line in cases), stdout
    assert sum(line.endswith("SKIP") for line in cases) <= 3, stdout
    assert sum("mxfp4_rows" in line for line in cases) == 5, stdout
    assert sum("fma_peak" in line for line in cases) == 1, stdout
    for line in cases:
        special = re.search(r"inf/nan=(\d+)", line)
        if special is not None:
            assert int(special.group(1)) <= 0.1 * int(re.search(r"n=(\d+)", line).group(1)), line
    assert "RESULT PASS" in stdout, stdout


def _assert_all_fail(rc: int, stdout: str) -> None:
    cases = [line for line in _cases(stdout) if "fma_peak" not in line]  # the probe compares nothing
    assert rc == 1 and len(cases) >= 21 and all(line.endswith("FAIL") for line in cases), stdout


@pytest.fixture(scope="module")
def native_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("harness")
    lib = d / "liblantern_kernels.so"
    return _harness_for(NATIVE, d, toolchain.shared_library_command(NATIVE, lib),
                        [f"-L{d}", "-llantern_kernels", f"-Wl,-rpath,{d}"])


@pytest.fixture(scope="module")
def neon_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("harness-arm")
    lib = d / "liblantern_kernels.so"
    return _harness_for(CROSS, d, toolchain.shared_library_command(CROSS, lib),
                        [f"-L{d}", "-llantern_kernels", f"-Wl,-rpath,{d}"])


def _qemu(harness: Path, *args: str) -> list[str]:
    return [QEMU, "-L", AARCH64_SYSROOT, str(harness), *args]


@pytest.fixture(scope="module")
def windows_harness(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """harness.exe and _lantern_kernels.dll (as setup.py builds it on Windows) side by side, and a Wine env."""
    d = tmp_path_factory.mktemp("harness-win")
    compiler = toolchain.Compiler(MINGW, "gnu", mingw=True)
    implib = d / "liblantern_kernels.dll.a"
    exe = _harness_for(MINGW, d, toolchain.windows_dll_command(compiler, d / "_lantern_kernels.dll", import_lib=implib),
                       [str(implib), "-static"], exe="harness.exe")
    env = dict(os.environ, WINEPREFIX=str(tmp_path_factory.mktemp("wineprefix")), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree,mshtml=")  # no Mono / Gecko prompts in a fresh prefix
    return exe, env


@needs_native
def test_native_harness_best_path_matches_scalar(native_harness: Path) -> None:
    # Scales 253/254 are left out here: the AVX-512 and AVX2 paths scale per-lane partial sums, which overflow to
    # +inf and -inf (NaN) where the scalar path's block total stays finite (reported; NEON sums first).
    rc, out, head = _run([str(native_harness), "--no-huge-scales"], timeout=120)
    assert rc == 0, out
    _assert_meaningful(out)
    if X86:
        assert head["best_path"] in ("1", "2", "3")
    elif platform.machine() in ("aarch64", "arm64"):
        assert head["best_path"] == "4"


@needs_native
def test_native_harness_can_fail(native_harness: Path) -> None:
    """Negative control: one activation of the fast path's input changed -> every comparison fails."""
    rc, out, _ = _run([str(native_harness), "--no-huge-scales", "--perturb"], timeout=120)
    _assert_all_fail(rc, out)


@needs_native
@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_native_harness_avx2_path_matches_scalar(native_harness: Path) -> None:
    """The AVX2 path (forced with --path 3, also on AVX-512 machines) against scalar, and its negative control."""
    rc, out, head = _run([str(native_harness), "--no-huge-scales", "--path", "3"], timeout=120)
    if rc == 3:
        pytest.skip("CPU lacks AVX2/FMA")
    assert rc == 0 and head["best_path"] == "3", out
    _assert_meaningful(out)
    rc, out, _ = _run([str(native_harness), "--no-huge-scales", "--path", "3", "--perturb"], timeout=120)
    _assert_all_fail(rc, out)


@needs_cross
def test_neon_path_matches_scalar_under_qemu(neon_harness: Path) -> None:
    rc, out, head = _run(_qemu(neon_harness), timeout=300)
    assert head.get("best_path") == "4", out  # NEON really ran (not scalar against scalar)
    assert rc == 0, out
    _assert_meaningful(out)


@pytest.mark.slow
@needs_cross
def test_neon_full_sizes_and_negative_control_under_qemu(neon_harness: Path) -> None:
    """All sizes of the brief (MoE D = I = 2880 at T = 1, 5, 40; ~2-3 min under qemu), then --perturb."""
    rc, out, head = _run(_qemu(neon_harness, "--size", "full"), timeout=900)
    assert head.get("best_path") == "4" and rc == 0, out
    _assert_meaningful(out)
    rc, out, _ = _run(_qemu(neon_harness, "--perturb"), timeout=300)
    _assert_all_fail(rc, out)


@needs_wine
def test_windows_dll_under_wine(windows_harness: tuple[Path, dict[str, str]]) -> None:
    """The Windows build (MinGW-w64 DLL) under Wine: the best path, the AVX2 path, and the negative control."""
    exe, env = windows_harness
    rc, out, head = _run([WINE, str(exe), "--no-huge-scales"], timeout=300, env=env)
    assert rc == 0 and head.get("best_path") in ("1", "2", "3"), out
    _assert_meaningful(out)
    rc, out, head = _run([WINE, str(exe), "--no-huge-scales", "--path", "3"], timeout=120, env=env)
    if rc != 3:  # 3: this CPU lacks AVX2
        assert rc == 0 and head.get("best_path") == "3", out
        _assert_meaningful(out)
    rc, out, _ = _run([WINE, str(exe), "--no-huge-scales", "--perturb"], timeout=120, env=env)
    _assert_all_fail(rc, out)


@needs_wine
def test_windows_dll_exports_only_the_interface(windows_harness: tuple[Path, dict[str, str]]) -> None:
    """The DLL exports exactly the header's functions and needs nothing beyond what every Windows has."""
    from engine.kernels import header

    objdump = shutil.which("x86_64-w64-mingw32-objdump")
    if objdump is None:
        pytest.skip("no x86_64-w64-mingw32-objdump")
    dll = windows_harness[0].with_name("_lantern_kernels.dll")
    text = subprocess.run([objdump, "-p", str(dll)], capture_output=True, text=True, check=True).stdout
    exports = set(re.findall(r"^\s*\[\s*\d+\]\s+(lk_\w+)$", text, flags=re.M))
    assert exports == set(header.read_interface().functions), text
    assert set(re.findall(r"DLL Name: (\S+)", text)) <= {"KERNEL32.dll", "msvcrt.dll"}, text


@needs_cross
def test_kernels_compile_warning_free_for_aarch64() -> None:
    for src in toolchain.sources():
        cmd = [CROSS, "-O3", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", src]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", (src, proc.stderr)


@pytest.mark.skipif(shutil.which("clang++") is None or CROSS is None,
                    reason="needs clang++ and the aarch64 GNU headers")
def test_kernels_compile_warning_free_with_clang_for_aarch64() -> None:
    for src in toolchain.sources():
        cmd = ["clang++", "--target=aarch64-linux-gnu", "-O3", "-std=c++17", "-Wall", "-Wextra", "-Werror",
               "-fsyntax-only", src]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", (src, proc.stderr)
