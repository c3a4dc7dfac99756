"""engine/kernels/toolchain.py: the compiler the Windows build picks, and the commands every build uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.kernels import toolchain


def _fake_compiler(directory: Path, name: str, target: str) -> Path:
    """An executable `name` that answers -dumpmachine with `target`."""
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {target}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_windows_build_picks_a_compiler_of_windows_code(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    assert toolchain.find_windows_compiler(env) is None                        # nothing on PATH
    _fake_compiler(tmp_path, "g++", "x86_64-linux-gnu")                         # a g++, but not a MinGW one
    assert toolchain.find_windows_compiler(env) is None
    clang = _fake_compiler(tmp_path, "clang++", "x86_64-pc-windows-msvc")
    assert toolchain.find_windows_compiler(env) == toolchain.Compiler(str(clang), "gnu", mingw=False)
    mingw = _fake_compiler(tmp_path, "x86_64-w64-mingw32-g++", "x86_64-w64-mingw32")
    assert toolchain.find_windows_compiler(env) == toolchain.Compiler(str(mingw), "gnu", mingw=True)
    posix = _fake_compiler(tmp_path, "x86_64-w64-mingw32-g++-posix", "x86_64-w64-mingw32")   # std::thread
    assert toolchain.find_windows_compiler(env) == toolchain.Compiler(str(posix), "gnu", mingw=True)
    cl = _fake_compiler(tmp_path, "clang-cl", "")
    assert toolchain.find_windows_compiler({**env, toolchain.ENV_CXX: "clang-cl"}) == toolchain.Compiler(str(cl), "msvc")
    assert toolchain.find_windows_compiler({**env, toolchain.ENV_CXX: "no-such-cxx"}) is None


def test_build_commands_use_the_shared_flags(tmp_path: Path) -> None:
    out = tmp_path / "_lantern_kernels.dll"
    mingw = toolchain.windows_dll_command(toolchain.Compiler("g++", "gnu", mingw=True), out)
    assert mingw[0] == "g++" and all(f in mingw for f in toolchain.GNU_FLAGS)
    assert "-static" in mingw and "-shared" in mingw and str(out) in mingw
    assert all(src in mingw for src in toolchain.sources())
    cl = toolchain.windows_dll_command(toolchain.Compiler("clang-cl", "msvc"), out, import_lib=tmp_path / "k.lib")
    assert "/LD" in cl and f"/Fe{out}" in cl and "/clang:-ffp-contract=off" in cl and cl[-2] == "/link"
    so = toolchain.shared_library_command("c++", tmp_path / "k.so")
    assert "-ffp-contract=off" in so and "-shared" in so and "-fPIC" in so
    assert [Path(s).name for s in toolchain.sources()] == list(toolchain.SOURCES)
    assert all(os.path.isfile(s) for s in toolchain.sources())
    assert all((toolchain.KERNELS_DIR / h).is_file() for h in toolchain.HEADERS)
