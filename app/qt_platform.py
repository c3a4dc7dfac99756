"""Before the window: can Qt's platform plugin load here? If not, one line that says how to fix it.

On a fresh Linux desktop the PySide6 wheel's "xcb" plugin often cannot load because a few small X
libraries are not installed (libxcb-icccm4, libxcb-keysyms1, libxcb-cursor0 on Debian and Ubuntu).
Qt then aborts with "could not load the Qt platform plugin" and a hint that names the wrong library.
This module finds what is missing before Qt starts: it loads the plugin with the dynamic loader (Qt
loads the same file next, so this costs nothing when it works). When that fails, `ldd` lists every
library the plugin needs that cannot be found; each is mapped to the Debian package that ships it
(Debian's library naming rule, checked against apt's package lists when apt is there), and the answer
is one sentence with the install command. QtGui is never imported here: loading the plugin is what aborts.

Only Linux is checked: the Windows and macOS builds carry every library the plugins need.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger(__name__)

# Platforms that need no desktop and no extra libraries.
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "linuxfb"})
# Sonames whose Debian package name does not follow the library naming rule.
PACKAGE_EXCEPTIONS = {
    "libglib-2.0.so.0": "libglib2.0-0", "libgobject-2.0.so.0": "libglib2.0-0",
    "libgio-2.0.so.0": "libglib2.0-0", "libgmodule-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0", "libz.so.1": "zlib1g", "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_SONAME = re.compile(r"^(lib.+?)\.so\.(\d+)")


@dataclass(frozen=True, slots=True)
class PlatformProblem:
    """Why the window cannot open, and what to do about it."""

    platform: str
    missing_libraries: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    reason: str = ""

    def install_command(self) -> str:
        return f"sudo apt install {' '.join(self.packages)}" if self.packages else ""

    def message(self) -> str:
        """One line for the terminal (and the log)."""
        if self.reason:
            return f"Lantern cannot open its window: {self.reason}"
        line = (f"Lantern cannot open its window: Qt's \"{self.platform}\" platform plugin needs system "
                f"libraries that are not installed ({', '.join(self.missing_libraries)}).")
        if self.packages:
            line += f" Install them with: {self.install_command()}"
        else:
            line += " Install the packages that provide them with your system's package manager."
        return line


def debian_package_for(soname: str) -> str:
    """Debian's name for the package holding `soname` (policy: libfoo.so.N -> libfooN, libfoo2.so.N -> libfoo2-N)."""
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    match = _SONAME.match(soname)
    if not match:
        return soname.split(".so")[0].lower().replace("_", "-")
    stem, number = match.group(1).lower().replace("_", "-"), match.group(2)
    return f"{stem}-{number}" if stem[-1].isdigit() else f"{stem}{number}"


def _apt_knows(package: str) -> bool | None:
    """Whether apt's package lists have `package` (None: no apt-cache here, or it failed)."""
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        return None
    try:
        out = subprocess.run([apt_cache, "show", "--no-all-versions", package], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.returncode == 0 and bool(out.stdout.strip())


def packages_for(sonames: list[str], apt_knows: Callable[[str], bool | None] = _apt_knows) -> tuple[str, ...]:
    """The Debian packages to install for the missing `sonames` (in order, without repeats).

    Newer Debian and Ubuntu renamed some libraries for the 64-bit time transition (`libfoo1t64`):
    where apt does not know the plain name but knows the t64 one, that one is given."""
    packages: list[str] = []
    for soname in sonames:
        name = debian_package_for(soname)
        if apt_knows(name) is False and apt_knows(name + "t64"):
            name += "t64"
        if name not in packages:
            packages.append(name)
    return tuple(packages)


def missing_libraries(library: Path, ldd: Callable[[Path], str] | None = None) -> list[str]:
    """Sonames that `library` (and what it links, transitively) needs but the loader cannot find."""
    text = (ldd or _run_ldd)(library)
    found: list[str] = []
    for name in _NOT_FOUND.findall(text):
        if name not in found:
            found.append(name)
    return found


def _run_ldd(library: Path) -> str:
    exe = shutil.which("ldd")
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, str(library)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("ldd %s failed: %s", library, error)
        return ""
    return out.stdout + out.stderr


def plugins_dir() -> Path:
    """PySide6's Qt plugin folder (in a checkout's venv or a PyInstaller build), found without loading Qt."""
    override = os.environ.get("QT_PLUGIN_PATH")
    if override:
        first = Path(override.split(os.pathsep)[0])
        if (first / "platforms").is_dir():
            return first
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    base = Path(spec.origin).parent if spec is not None and spec.origin else Path(sys.prefix)
    return base / "Qt" / "plugins"


def candidate_platforms(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order (QT_QPA_PLATFORM may list several, `;`-separated)."""
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return [part.split(":")[0].strip() for part in requested.split(";") if part.strip()]
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return ["wayland", "xcb"]
    return ["xcb"]


def _plugin_problem(name: str, plugins: Path, env: Mapping[str, str],
                    ldd: Callable[[Path], str] | None,
                    apt_knows: Callable[[str], bool | None]) -> PlatformProblem | None:
    if name in HEADLESS_PLATFORMS:
        return None
    if name == "xcb" and not env.get("DISPLAY"):
        return PlatformProblem(name, reason="no X11 display was found (DISPLAY is not set). Start Lantern from "
                                            "your desktop session, or set QT_QPA_PLATFORM=offscreen for tests.")
    if name == "wayland" and not env.get("WAYLAND_DISPLAY"):
        return PlatformProblem(name, reason="no Wayland display was found (WAYLAND_DISPLAY is not set).")
    plugin = plugins / "platforms" / f"libq{name}.so"
    if not plugin.is_file():
        return PlatformProblem(name, reason=f"Qt's \"{name}\" platform plugin is missing ({plugin}); reinstall Lantern.")
    if ldd is None:
        error = _dlopen_error(plugin)
        if error is None:       # it loads (Qt loads the same file next): the common, fast case
            return None
    missing = missing_libraries(plugin, ldd)
    if not missing:
        if ldd is not None:
            return None
        return PlatformProblem(name, reason=f"Qt's \"{name}\" platform plugin cannot be loaded: {error}")
    return PlatformProblem(name, tuple(missing), packages_for(missing, apt_knows))


def _dlopen_error(library: Path) -> str | None:
    """None if the dynamic loader can load `library` with everything it links; else its error."""
    import ctypes

    try:
        ctypes.CDLL(str(library))
    except OSError as error:
        return str(error)
    return None


def check(env: Mapping[str, str] | None = None, *, plugins: Path | None = None,
          ldd: Callable[[Path], str] | None = None,
          apt_knows: Callable[[str], bool | None] = _apt_knows,
          platform: str = sys.platform) -> PlatformProblem | None:
    """None if one of the platforms Qt will try can load; else the problem of the last one tried."""
    if not platform.startswith("linux"):
        return None
    env = os.environ if env is None else env
    plugins = plugins or plugins_dir()
    problem = None
    for name in candidate_platforms(env):
        problem = _plugin_problem(name, plugins, env, ldd, apt_knows)
        if problem is None:
            return None
    return problem


BUILD_PLATFORMS = ("xcb", "wayland")
"""The desktop platform plugins a Linux build ships (packaging/bundle_prune.KEEP_PLUGINS)."""


def main(argv: list[str] | None = None) -> int:
    """`python -m app.qt_platform [--build]`: print the problem (exit 1) or nothing (exit 0).

    `--build` (make package): every desktop plugin a build ships must load here, whatever the session
    is, because PyInstaller copies the libraries they need from this machine."""
    args = sys.argv[1:] if argv is None else argv
    if "--build" in args:
        fake_session = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}
        problems = [p for name in BUILD_PLATFORMS
                    if (p := check({**fake_session, "QT_QPA_PLATFORM": name})) is not None]
    else:
        problems = [p for p in [check()] if p is not None]
    for problem in problems:
        print(problem.message(), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
