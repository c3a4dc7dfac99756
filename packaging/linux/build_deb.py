"""Build dist/lantern_<version>_<arch>.deb from the PyInstaller folder dist/Lantern/ (`make package`).

    python packaging/linux/build_deb.py [--dist dist]

What goes where:
    /opt/lantern/                                  the PyInstaller folder (Lantern + _internal/)
    /usr/bin/lantern                               a 3-line launcher (packaging/linux/lantern.sh)
    /usr/share/applications/lantern.desktop        the menu entry (packaging/linux/lantern.desktop)
    /usr/share/icons/hicolor/<n>x<n>/apps/lantern.png, scalable/apps/lantern.svg
    /usr/share/doc/lantern/copyright               Lantern's license; the bundled ones are in Help > About

`Depends:` is worked out, not typed: every shared library that a file in the bundle links to (ELF
`NEEDED`) and that the bundle does not carry is looked up on this machine (`ldconfig -p`, `dpkg -S`),
and its package is a dependency (libc6 with the build machine's version as the minimum). Menus and icon
caches are refreshed by dpkg triggers of desktop-file-utils and hicolor-icon-theme, so the package has
no maintainer scripts.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "packaging"))

from bundle_prune import needed  # noqa: E402

log = logging.getLogger("build_deb")

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# Provided by every Debian/Ubuntu system (glibc's own libraries): no package named for these but libc6.
GLIBC = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libnsl|libanl|ld-linux[-\w]*)\.so")
# python3 runs the model's code for the python tool (the built program carries no interpreter for it) and
# bubblewrap is its sandbox: without them the tool says what is missing (engine/tools/python_sandbox).
RECOMMENDS = ("fonts-dejavu-core", "hicolor-icon-theme", "python3", "bubblewrap")
DESCRIPTION = """Private, offline chat with gpt-oss-20b and gpt-oss-120b
 Lantern is a desktop chat app for OpenAI's open-weight models. It runs the
 model on this computer with its own PyTorch runtime: no account, no server,
 no network after the one model download you ask for."""


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def deb_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def elf_files(folder: Path) -> list[Path]:
    out = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(path)
    return out


def _ldconfig_paths() -> dict[str, str]:
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    paths: dict[str, str] = {}
    for match in re.finditer(r"^\s*(\S+) \(([^)]*)\) => (\S+)", out, re.MULTILINE):
        if "x86-64" in match.group(2) or "64bit" in match.group(2) or os.uname().machine not in ("x86_64",):
            paths.setdefault(match.group(1), match.group(3))
    return paths


def owner_package(path: str) -> str | None:
    for candidate in (path, os.path.realpath(path)):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].split(",")[0].strip()
    return None


def installed_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return out.stdout.strip()


def system_dependencies(bundle: Path) -> tuple[list[str], list[str]]:
    """(Depends entries, sonames that nothing on this machine provides)."""
    elves = elf_files(bundle)
    provided = {p.name for p in bundle.rglob("*")}
    wanted: set[str] = set()
    for elf in elves:
        wanted.update(needed(str(elf)))
    outside = sorted(n for n in wanted if n not in provided)
    where = _ldconfig_paths()
    packages: dict[str, str] = {}
    unresolved = []
    for soname in outside:
        if GLIBC.match(soname):
            packages.setdefault("libc6", f"libc6 (>= {installed_version('libc6').split('-')[0]})")
            continue
        path = where.get(soname)
        owner = owner_package(path) if path else None
        if owner is None:
            unresolved.append(soname)
            continue
        packages.setdefault(owner, owner)
    return sorted(packages.values()), unresolved


def control_file(name: str, ver: str, arch: str, depends: list[str], installed_kib: int) -> str:
    return "\n".join([
        f"Package: {name}",
        f"Version: {ver}",
        f"Architecture: {arch}",
        "Maintainer: Lantern developers <lantern@localhost>",
        f"Installed-Size: {installed_kib}",
        f"Depends: {', '.join(depends)}",
        f"Recommends: {', '.join(RECOMMENDS)}",
        "Section: utils",
        "Priority: optional",
        f"Description: {DESCRIPTION}",
        "",
    ])


def build(dist: Path, *, compression: str = "xz") -> Path:
    bundle = dist / "Lantern"
    if not (bundle / "Lantern").is_file():
        raise SystemExit(f"{bundle}/Lantern is missing: run `make package` first")
    ver, arch = version(), deb_arch()
    stage = dist / "deb-root"
    shutil.rmtree(stage, ignore_errors=True)
    opt = stage / "opt" / "lantern"
    shutil.copytree(bundle, opt, symlinks=True)
    (stage / "usr" / "bin").mkdir(parents=True)
    shutil.copy2(HERE / "lantern.sh", stage / "usr" / "bin" / "lantern")
    (stage / "usr" / "bin" / "lantern").chmod(0o755)
    apps = stage / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy2(HERE / "lantern.desktop", apps / "lantern.desktop")
    icons = stage / "usr" / "share" / "icons" / "hicolor"
    built_icons = ROOT / "build" / "lantern-extra" / "icons"   # written by lantern.spec (incl. 512 px)
    for size in ICON_SIZES:
        src = built_icons / f"lantern-{size}.png"
        if not src.is_file():
            src = ROOT / "resources" / "icons" / f"lantern-{size}.png"
        if not src.is_file():
            log.warning("no %d px icon", size)
            continue
        target = icons / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copy2(src, target / "lantern.png")
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(ROOT / "resources" / "icons" / "lantern.svg", icons / "scalable" / "apps" / "lantern.svg")
    doc = stage / "usr" / "share" / "doc" / "lantern"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Lantern: Apache-2.0 (text below). The models it downloads are Apache-2.0. The libraries bundled in\n"
        "/opt/lantern and their licenses are listed in the app (Help > About Lantern).\n\n"
        + (ROOT / "LICENSE").read_text(encoding="utf-8"))
    depends, unresolved = system_dependencies(bundle)
    if unresolved:
        raise SystemExit("these libraries are linked by the bundle but neither bundled nor installed here, so "
                         f"their packages cannot be named: {', '.join(unresolved)}")
    installed_kib = int(subprocess.run(["du", "-sk", "--apparent-size", str(stage)], capture_output=True,
                                       text=True, check=True).stdout.split()[0])
    (stage / "DEBIAN").mkdir()
    (stage / "DEBIAN" / "control").write_text(control_file("lantern", ver, arch, depends, installed_kib))
    for path in stage.rglob("*"):   # dpkg wants 0755 folders and no group/world-writable files
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file() and not path.is_symlink():
            path.chmod(0o755 if os.access(path, os.X_OK) else 0o644)
    out = dist / f"lantern_{ver}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(stage), str(out)],
                   check=True)
    shutil.rmtree(stage)
    log.info("built %s (%.0f MB); Depends: %s", out, out.stat().st_size / 1e6, ", ".join(depends))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--compression", default="xz", choices=["xz", "zstd", "gzip", "none"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.dist, compression=args.compression)
    return 0


if __name__ == "__main__":
    sys.exit(main())
