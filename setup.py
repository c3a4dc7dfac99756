"""Build hook for the optional native CPU kernels (engine/kernels/*.cpp; interface lantern_kernels.h).

All metadata lives in pyproject.toml. The extension is optional: when no usable C++ compiler is found the
package still installs and the engine falls back to its pure-torch path, reporting the reason
(engine.kernels.status()). Sources and flags come from engine/kernels/toolchain.py (shared with the tests).

- Linux, macOS: a (function-less) Python extension built with the platform's GCC/Clang, loaded by ctypes.
- Windows: a plain DLL, engine/kernels/_lantern_kernels.dll, built with MinGW-w64 g++ or LLVM clang(-cl)
  (LANTERN_CXX names one, else the first found on PATH). MSVC's cl cannot compile the kernels' GCC/Clang
  vector code, so it is never used; without one of those compilers the build says so and skips the kernels.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

log = logging.getLogger("lantern.setup")

ROOT = Path(__file__).resolve().parent
KERNELS_EXT = "engine.kernels._lantern_kernels"


def _load_toolchain():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("lantern_kernels_toolchain", ROOT / "engine/kernels/toolchain.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


toolchain = _load_toolchain()


def _warn(message: str) -> None:
    log.warning(message)
    print(f"warning: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that tries with the usual flags, then plain ones, then gives up with a warning."""

    def copy_file(self, infile, outfile, *args, **kwargs):  # type: ignore[no-untyped-def]
        # In-place builds replace the library atomically: a running engine keeps its mapped copy intact.
        tmp = f"{outfile}.tmp{os.getpid()}"
        shutil.copyfile(infile, tmp)
        shutil.copymode(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1

    def get_ext_filename(self, fullname: str) -> str:
        if sys.platform == "win32" and fullname == KERNELS_EXT:  # a plain DLL (engine.kernels finds it by name)
            return os.path.join(*fullname.split(".")) + ".dll"
        return super().get_ext_filename(fullname)

    def build_extension(self, ext: Extension) -> None:
        if sys.platform == "win32":
            self._build_windows_dll(ext)
            return
        ctype = self.compiler.compiler_type
        threads = list(toolchain.THREAD_FLAGS) if ctype == "unix" else []
        attempts = [
            (list(toolchain.GNU_FLAGS) + threads, threads),
            (list(toolchain.GNU_FALLBACK_FLAGS), []),
        ]
        for compile_args, link_args in attempts:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
            try:
                super().build_extension(ext)
                return
            except Exception as exc:  # noqa: BLE001 - any compiler failure means "fall back"
                _warn(f"building {ext.name} with {compile_args} failed ({exc}); retrying/falling back")
        _warn(f"{ext.name} not built; Lantern will use its pure-torch CPU path (~25x slower)")

    def _build_windows_dll(self, ext: Extension) -> None:
        compiler = toolchain.find_windows_compiler()
        if compiler is None:
            _warn("the native CPU kernels need MinGW-w64 g++ (e.g. from MSYS2 or winlibs) or LLVM clang/clang-cl on "
                  f"PATH, or {toolchain.ENV_CXX} naming one (MSVC's cl cannot compile them); none was found, so "
                  "Lantern will use its pure-torch CPU path (~25x slower)")
            return
        out = Path(self.get_ext_fullpath(ext.name))
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = toolchain.windows_dll_command(compiler, out, root=ROOT / "engine" / "kernels")
        print(" ".join(cmd))
        try:
            toolchain.run(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            _warn(f"building {out.name} with {compiler.path} failed ({exc}){detail[-2000:]}; Lantern will use its "
                  "pure-torch CPU path (~25x slower)")


setup(
    ext_modules=[
        Extension(
            KERNELS_EXT,
            sources=[f"engine/kernels/{name}" for name in toolchain.SOURCES],
            depends=[f"engine/kernels/{name}" for name in toolchain.HEADERS],  # rebuild when a header changes
            include_dirs=["engine/kernels"],
            define_macros=[("LK_PYTHON_MODULE", "1")],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
