"""Helpers for packaging/lantern.spec: what the bundle leaves out, its package metadata, its system libraries.

PyInstaller's hooks are generous: torch's ships its C++ test programs and every Qt plugin comes along,
with the Qt and system libraries those plugins need (Qt Quick and Qml for the virtual keyboard, Qt PDF for
the PDF image reader, GTK's stack for the GTK theme). `prune` drops the files matched below and then every
bundled library that nothing left in the bundle links to (found from the ELF `NEEDED` entries, so a
library that is still needed can never be dropped by mistake).

PyInstaller TOC entries are (destination name, source path, type code) tuples.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
import shutil
import subprocess
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

# Destination patterns that are never loaded by Lantern.
DROP_PATTERNS = (
    "torch/test/*",                 # C++ unit-test programs (83 MB)
    "torch/bin/[!t]*", "torch/bin/test_*",   # protoc and C++ test programs (50 MB); not torch_shm_manager,
                                            # whose presence `import torch` checks
    "torch/include/*", "torch/share/*",
    "torch/lib/libjitbackend_test.so", "torch/lib/libtorchbind_test.so",
    "torch/lib/libbackend_with_compiler.so", "torch/lib/libaoti_custom_ops.so",
    "PySide6/Qt/translations/*",    # Qt's own dialog texts in other languages (the app is English only)
    "PySide6/Qt/qml/*",
)
# Qt plugins that stay: desktop platforms (X11, Wayland) and headless ones (self-test), GL integration,
# the desktop portal theme (native file dialogs), input methods, and the image formats the window uses.
KEEP_PLUGINS = (
    "platforms/libqxcb.so", "platforms/libqwayland*.so", "platforms/libqoffscreen.so", "platforms/libqminimal.so",
    "xcbglintegrations/*", "wayland-*/*",
    "platformthemes/libqxdgdesktopportal.so",
    "platforminputcontexts/libcomposeplatforminputcontextplugin.so",
    "platforminputcontexts/libibusplatforminputcontextplugin.so",
    "imageformats/libqsvg.so", "imageformats/libqico.so", "imageformats/libqjpeg.so", "imageformats/libqgif.so",
    "iconengines/*",
)
QT_PLUGINS = "PySide6/Qt/plugins/"
# Libraries that are loaded without a NEEDED entry pointing at them.
KEEP_LIBRARIES = ("libpython*",)    # the bootloader opens it


def _dropped_by_pattern(dest: str, linux: bool = True) -> bool:
    dest = dest.replace("\\", "/")
    if any(fnmatch.fnmatch(dest, p) for p in DROP_PATTERNS):
        return True
    if linux and dest.startswith(QT_PLUGINS):   # KEEP_PLUGINS names Linux files (.so); elsewhere keep all
        rel = dest[len(QT_PLUGINS):]
        return not any(fnmatch.fnmatch(rel, p) for p in KEEP_PLUGINS)
    return False


@functools.lru_cache(maxsize=None)
def needed(path: str) -> tuple[str, ...]:
    """The sonames an ELF file links to (readelf -d), () if it is not one or readelf is missing."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return ()
    out = subprocess.run([readelf, "-d", path], capture_output=True, text=True)
    return tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout))


def _is_library_slot(dest: str) -> bool:
    """Libraries PyInstaller placed by dependency analysis: top level, or Qt's lib folder."""
    dest = dest.replace("\\", "/")
    return "/" not in dest or dest.startswith("PySide6/Qt/lib/")


def prune(binaries: list, datas: list, *, linux: bool) -> tuple[list, list, list[str]]:
    """(binaries, datas, dropped destination names)."""
    dropped = [d for d, _, _ in binaries + datas if _dropped_by_pattern(d, linux)]
    binaries = [e for e in binaries if not _dropped_by_pattern(e[0], linux)]
    datas = [e for e in datas if not _dropped_by_pattern(e[0], linux)]
    if not linux:
        return binaries, datas, dropped
    # Reachability over NEEDED, from everything that is not a dependency-analysis library.
    by_soname: dict[str, list[tuple]] = {}
    for entry in binaries:
        by_soname.setdefault(PurePosixPath(entry[0].replace("\\", "/")).name, []).append(entry)
    keep: set[int] = set()
    todo = [e for e in binaries if not _is_library_slot(e[0])
            or any(fnmatch.fnmatch(PurePosixPath(e[0]).name, p) for p in KEEP_LIBRARIES)]
    while todo:
        entry = todo.pop()
        if id(entry) in keep:
            continue
        keep.add(id(entry))
        if entry[2] == "SYMLINK":   # its target is the file that gets loaded
            target = PurePosixPath(str(entry[1]).replace("\\", "/")).name
            todo.extend(by_soname.get(target, []))
            continue
        for soname in needed(str(entry[1])):
            todo.extend(by_soname.get(soname, []))
    kept = [e for e in binaries if id(e) in keep]
    dropped += [e[0] for e in binaries if id(e) not in keep]
    return kept, datas, sorted(dropped)


def distribution_or_none(name: str) -> Distribution | None:
    try:
        return distribution(name)
    except PackageNotFoundError:
        return None


def shared_paths(dists: list[Distribution]) -> set[str]:
    """Files that more than one distribution lists (PySide6's add-on wheels all carry PySide6/__init__.py)."""
    seen: dict[str, int] = {}
    for dist in dists:
        for f in dist.files or []:
            seen[f.as_posix()] = seen.get(f.as_posix(), 0) + 1
    return {path for path, count in seen.items() if count > 1}


def ships_files(dist: Distribution, bundled_paths: set[str], shared: set[str] = frozenset()) -> bool:
    """Whether a file that `dist` alone installed (its RECORD) is in the bundle, as a module, binary or data."""
    for f in dist.files or []:
        path = f.as_posix()
        if path.endswith(".pyc") or ".dist-info/" in path or path in shared:
            continue
        if path in bundled_paths or path.removesuffix(".py") + "/__init__.py" in bundled_paths:
            return True
    return False


def metadata_toc(dist: Distribution) -> list[tuple[str, str, str]]:
    """DATA entries that copy `dist`'s .dist-info folder into the bundle (importlib.metadata reads it there)."""
    folder = Path(getattr(dist, "_path", ""))
    if not folder.is_dir():
        log.warning("no metadata folder for %s", dist.metadata["Name"])
        return []
    return [(f"{folder.name}/{p.relative_to(folder).as_posix()}", str(p), "DATA")
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "RECORD"]


def _dpkg_owner(path: str) -> str | None:
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return None
    for candidate in (path, str(Path(path).resolve())):
        out = subprocess.run([dpkg, "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0 and ":" in out.stdout:
            return out.stdout.split(":")[0].split(",")[0].strip()
    return None


def _copyright_licenses(text: str) -> str:
    """The distinct `License:` names of a Debian (DEP-5) copyright file."""
    names = []
    for match in re.finditer(r"^License:\s*(\S.*)$", text, re.MULTILINE):
        name = match.group(1).strip()
        if name not in names:
            names.append(name)
    return ", ".join(names)


def system_library_licenses(binaries: list) -> dict:
    """{"packages": [...]}: each Debian package whose libraries were bundled, with its license."""
    packages: dict[str, dict] = {}
    for dest, src, kind in binaries:
        src = str(src)
        if kind == "SYMLINK" or "site-packages" in src or not src.startswith(("/usr/", "/lib")):
            continue
        owner = _dpkg_owner(src) or "unknown"
        item = packages.setdefault(owner, {"package": owner, "libraries": []})
        item["libraries"].append(PurePosixPath(dest).name)
    dpkg_query = shutil.which("dpkg-query")
    for name, item in packages.items():
        if name == "unknown" or dpkg_query is None:
            continue
        version = subprocess.run([dpkg_query, "-W", "-f", "${Version}", name], capture_output=True, text=True)
        item["version"] = version.stdout.strip()
        copyright_file = Path("/usr/share/doc") / name.split(":")[0] / "copyright"
        try:
            text = copyright_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        item["copyright"] = str(copyright_file)
        item["license"] = _copyright_licenses(text)
        item["license_text"] = text[:40_000]
    return {"packages": sorted(packages.values(), key=lambda i: i["package"])}


# Libraries stripped of their symbol tables (the dynamic loader reads only .dynsym): libtorch_cpu.so
# carries ~90 MB of them. Not everything is stripped: libraries that auditwheel patched (numpy.libs/,
# *.libs/) break when stripped ("ELF load command address/offset not page-aligned").
STRIP_PATTERNS = ("torch/lib/*.so*", "libpython*", "python3.*/lib-dynload/*.so", "engine/kernels/*.so",
                  "regex/*.so", "yaml/*.so", "tiktoken/*.so", "psutil/*.so")


def strip_copies(binaries: list, folder: Path) -> tuple[list, int]:
    """Point the matching TOC entries at stripped copies under `folder`; (binaries, bytes saved)."""
    strip = shutil.which("strip")
    if strip is None:
        log.warning("no strip here: libraries are bundled with their symbol tables")
        return binaries, 0
    out, saved = [], 0
    for dest, src, kind in binaries:
        if kind != "SYMLINK" and any(fnmatch.fnmatch(dest.replace("\\", "/"), p) for p in STRIP_PATTERNS):
            copy = folder / dest
            if not copy.is_file() or copy.stat().st_mtime < Path(src).stat().st_mtime:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, copy)
                subprocess.run([strip, "--strip-unneeded", str(copy)], check=True)
            saved += Path(src).stat().st_size - copy.stat().st_size
            src = str(copy)
        out.append((dest, src, kind))
    return out, saved
