"""Build hook for the optional native CPU kernels (engine/kernels/mxfp4_moe.cpp).

All metadata lives in pyproject.toml. The extension is optional: when no C++ compiler
is available the package still installs and the engine falls back to its pure-torch path, reporting
the reason (engine.kernels.status()).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

log = logging.getLogger("lantern.setup")

# Portable across GCC/Clang on x86-64 and AArch64 (Linux, macOS): SIMD paths select their ISA per function
# (x86 target attributes) or need only baseline AArch64 NEON, so no -march flags here.
_GCC_FLAGS = ["-O3", "-std=c++17", "-fvisibility=hidden", "-ffp-contract=off", "-fno-math-errno"]
_THREADS = {"unix": ["-pthread"], "msvc": []}


class OptionalBuildExt(build_ext):
    """build_ext that tries with the usual flags, then plain ones, then gives up quietly."""

    def copy_file(self, infile, outfile, *args, **kwargs):  # type: ignore[no-untyped-def]
        # In-place builds replace the library atomically: a running engine keeps its mapped copy intact.
        tmp = f"{outfile}.tmp{os.getpid()}"
        shutil.copyfile(infile, tmp)
        shutil.copymode(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1

    def build_extension(self, ext: Extension) -> None:
        ctype = self.compiler.compiler_type
        base = list(_GCC_FLAGS) if ctype == "unix" else ["/O2", "/std:c++17", "/fp:precise"]
        attempts = [
            (base + _THREADS.get(ctype, []), _THREADS.get(ctype, [])),
            (["-O2", "-std=c++17", "-ffp-contract=off"] if ctype == "unix" else [], []),
        ]
        for compile_args, link_args in attempts:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
            try:
                super().build_extension(ext)
                return
            except Exception as exc:  # noqa: BLE001 - any compiler failure means "fall back"
                log.warning("building %s with %s failed: %s", ext.name, compile_args, exc)
                print(f"warning: building {ext.name} failed ({exc}); retrying/falling back", file=sys.stderr)
        print(
            f"warning: {ext.name} not built; Lantern will use its pure-torch CPU path (slower)",
            file=sys.stderr,
        )


setup(
    ext_modules=[
        Extension(
            "engine.kernels._lantern_kernels",
            sources=["engine/kernels/mxfp4_moe.cpp"],
            depends=sorted(glob.glob("engine/kernels/*.h")),  # every header the .cpp includes (rebuild + sdist)
            define_macros=[("LK_PYTHON_MODULE", "1")],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
