"""How the native kernels are compiled: the sources and the flags, in one place for every build.

setup.py builds the library with them (the Python extension on Linux and macOS; on Windows a plain DLL
compiled with MinGW-w64 g++ or clang, since MSVC's cl cannot compile the kernels' GCC/Clang vector code),
and tests/native builds the harness's library the same way (natively, for AArch64 under qemu, and for
Windows under Wine). Standard library only: setup.py loads this file before the package is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parent
SOURCES = ("lantern_kernels.cpp", "scalar.cpp", "avx512.cpp", "avx2.cpp", "neon.cpp")
HEADERS = ("lantern_kernels.h", "common.h")

# GCC and Clang, MinGW-w64 included. No -march: the x86 paths pick their ISA per function (target
# attributes) and NEON is baseline AArch64, so the library runs on every CPU of its architecture. Fused
# multiply-add contraction stays off so the scalar path rounds exactly as written.
GNU_FLAGS = ("-O3", "-std=c++17", "-fvisibility=hidden", "-ffp-contract=off", "-fno-math-errno")
GNU_FALLBACK_FLAGS = ("-O2", "-std=c++17", "-ffp-contract=off")  # a second try for an unusual compiler
THREAD_FLAGS = ("-pthread",)
# MinGW-w64: a self-contained DLL (libstdc++, libgcc and winpthreads linked in; nothing to ship beside it).
MINGW_LINK_FLAGS = ("-shared", "-static")
# clang-cl (LLVM for Windows, MSVC-style driver): the same meaning in its spelling.
CLANG_CL_FLAGS = ("/O2", "/std:c++17", "/EHsc", "/clang:-ffp-contract=off", "/clang:-fno-math-errno")

ENV_CXX = "LANTERN_CXX"  # a compiler to use for the Windows DLL (g++, clang++ or clang-cl, or a path to one)
# What the Windows build looks for on PATH, in order (MinGW-w64's posix-thread g++ first: std::thread).
WINDOWS_CANDIDATES = ("x86_64-w64-mingw32-g++-posix", "x86_64-w64-mingw32-g++", "g++", "clang++", "clang-cl")


@dataclass(frozen=True)
class Compiler:
    path: str
    style: str  # "gnu" (g++, clang++, MinGW-w64) | "msvc" (clang-cl)
    mingw: bool = False  # a GNU-style compiler with the MinGW-w64 runtime (links it in statically)


def sources(root: Path = KERNELS_DIR) -> list[str]:
    return [str(root / name) for name in SOURCES]


def _style(path: str) -> str:
    return "msvc" if Path(path).name.lower().removesuffix(".exe") == "clang-cl" else "gnu"


def _target(path: str) -> str:
    """The target triple a GNU-style compiler produces code for ("" if it cannot say)."""
    try:
        return subprocess.run([path, "-dumpmachine"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _compiler(path: str) -> Compiler | None:
    """`path` as a compiler of Windows code (clang-cl; g++ or clang++ for MinGW-w64 or *-windows-msvc), else None."""
    if _style(path) == "msvc":
        return Compiler(path, "msvc")
    target = _target(path)
    if "mingw" in target:
        return Compiler(path, "gnu", mingw=True)
    if "windows" in target:
        return Compiler(path, "gnu")
    return None


def find_windows_compiler(env: dict[str, str] | None = None) -> Compiler | None:
    """The compiler the Windows build uses: LANTERN_CXX if set, else the first of WINDOWS_CANDIDATES on PATH that
    makes Windows code; None when there is none (MSVC's cl alone cannot build the kernels)."""
    env = dict(os.environ if env is None else env)
    path_var = env.get("PATH")
    names = (env[ENV_CXX],) if env.get(ENV_CXX) else WINDOWS_CANDIDATES
    for name in names:
        found = shutil.which(name, path=path_var)
        compiler = _compiler(found) if found else None
        if compiler is not None:
            return compiler
    return None


def windows_dll_command(compiler: Compiler, out: Path, *, root: Path = KERNELS_DIR,
                        import_lib: Path | None = None) -> list[str]:
    """The command that builds the kernels as a Windows DLL (`out`, e.g. _lantern_kernels.dll)."""
    if compiler.style == "msvc":
        cmd = [compiler.path, *CLANG_CL_FLAGS, "/LD", *sources(root), f"/Fe{out}"]
        if import_lib is not None:
            cmd += ["/link", f"/IMPLIB:{import_lib}"]
        return cmd
    link = MINGW_LINK_FLAGS if compiler.mingw else ("-shared",)
    cmd = [compiler.path, *GNU_FLAGS, *sources(root), "-o", str(out), *link]
    if import_lib is not None:
        cmd.append(f"-Wl,--out-implib,{import_lib}")
    return cmd


def shared_library_command(cxx: str, out: Path, *, root: Path = KERNELS_DIR, extra: Sequence[str] = ()) -> list[str]:
    """GCC/Clang: the kernels as a plain shared library (ELF .so or Mach-O .dylib), as setup.py compiles them."""
    return [cxx, *GNU_FLAGS, *THREAD_FLAGS, "-fPIC", "-shared", *sources(root), "-o", str(out), *extra]


def run(cmd: Sequence[str], *, timeout: float = 900) -> None:
    """Run a build command; CalledProcessError (with the compiler's output) if it fails."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)


if __name__ == "__main__":  # python engine/kernels/toolchain.py: which compiler a Windows build would use
    print(find_windows_compiler() if sys.platform == "win32" else "not Windows: setup.py uses the platform compiler")
