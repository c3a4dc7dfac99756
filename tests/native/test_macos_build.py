"""The kernels under Clang's macOS targets, as far as a Linux machine allows (no macOS SDK here).

What is checked: every source compiles warning-free (-Werror) with setup.py's flags for arm64-apple-macos11
and x86_64-apple-macos10.15 (Clang's Darwin predefines, libc++'s headers); on arm64 the NEON branch is the
one compiled and the x86 sources are empty; the x86_64 objects are Mach-O and link (ld64.lld) into a dylib
exporting exactly the header's functions. What is not: the macOS SDK's own C headers (the AArch64/x86-64
glibc headers stand in, with two macros bridging their differences), arm64 machine code for neon.cpp (Clang 14
crashes mangling NEON types over glibc's `long` int64_t, where Darwin's is `long long`), linking against
libSystem/libc++, running, and Apple's clang build. Skips with the reason when clang++, libc++ headers or the
cross headers are missing (apt: clang lld llvm libc++-dev g++-aarch64-linux-gnu).
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.kernels import header, toolchain

CLANG = shutil.which("clang++")
LIBCXX = next(iter(sorted(glob.glob("/usr/lib/llvm-*/include/c++/v1"))), None)
AARCH64_C = "/usr/aarch64-linux-gnu/include"
X86_C = ["/usr/include", "/usr/include/x86_64-linux-gnu"]
LD64 = shutil.which("ld64.lld") or next(iter(sorted(glob.glob("/usr/bin/ld64.lld-*"))), None)
LLVM_NM = shutil.which("llvm-nm") or next(iter(sorted(glob.glob("/usr/bin/llvm-nm-*"))), None)

needs_clang = pytest.mark.skipif(CLANG is None or LIBCXX is None,
                                 reason="needs clang++ and libc++ headers (apt: clang libc++-dev)")

# Standing in for the SDK: libc++ from LLVM, C headers from glibc. glibc spells a nonnull attribute with a
# name that is a Clang keyword on Darwin, and hides POSIX declarations libc++ uses unless asked for them.
BRIDGE = ["-nostdinc++", f"-isystem{LIBCXX}", "-Wno-macro-redefined", "-D__nonnull(params)=", "-D_GNU_SOURCE"]


def _flags(target: str, c_headers: list[str]) -> list[str]:
    return [f"--target={target}", *BRIDGE, *[f"-isystem{d}" for d in c_headers], *toolchain.GNU_FLAGS, "-Wall",
            "-Wextra", "-Werror"]


def _compile(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLANG, *args], capture_output=True, text=True, timeout=300)


@needs_clang
@pytest.mark.skipif(not Path(AARCH64_C).is_dir(), reason="needs the AArch64 C headers (apt: g++-aarch64-linux-gnu)")
def test_sources_compile_for_macos_arm64() -> None:
    flags = _flags("arm64-apple-macos11", [AARCH64_C])
    for src in toolchain.sources():
        proc = _compile([*flags, "-fsyntax-only", src])
        assert proc.returncode == 0 and proc.stderr == "", (src, proc.stderr)
    neon = _compile([*flags, "-E", str(toolchain.KERNELS_DIR / "neon.cpp")]).stdout
    assert "vqtbl1q_u8(lut.lo" in neon and "isa_neon() { return &kNeon; }" in neon  # the NEON branch
    for name in ("avx2.cpp", "avx512.cpp"):
        pre = _compile([*flags, "-E", str(toolchain.KERNELS_DIR / name)]).stdout
        assert "return nullptr; }" in pre and "_mm256" not in pre and "_mm512" not in pre, name


@needs_clang
@pytest.mark.skipif(LD64 is None or LLVM_NM is None, reason="needs ld64.lld and llvm-nm (apt: lld llvm)")
def test_macos_x86_64_dylib_exports_the_interface(tmp_path: Path) -> None:
    flags = _flags("x86_64-apple-macos10.15", X86_C)
    objects = []
    for src in toolchain.sources():
        obj = tmp_path / (Path(src).stem + ".o")
        proc = _compile([*flags, "-c", src, "-o", str(obj)])
        assert proc.returncode == 0 and proc.stderr == "", (src, proc.stderr)
        objects.append(str(obj))
    dylib = tmp_path / "liblantern_kernels.dylib"
    subprocess.run([LD64, "-dylib", "-arch", "x86_64", "-platform_version", "macos", "10.15", "10.15",
                    "-undefined", "dynamic_lookup", *objects, "-o", str(dylib)], check=True, capture_output=True)
    out = subprocess.run([LLVM_NM, "-gU", str(dylib)], capture_output=True, text=True, check=True).stdout
    exported = set(re.findall(r" T _(\w+)$", out, flags=re.M))
    assert exported == set(header.read_interface().functions), out   # -fvisibility=hidden: nothing else
