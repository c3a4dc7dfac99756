"""`make package-test`: check the built program and the .deb as a user's machine would run them.

    python packaging/package_test.py [--dist dist] [--report dist/package-test.txt]

1. The bundle: every library a bundled file links to is either in the bundle or named in the .deb's
   Depends; `dist/Lantern/Lantern --self-test` (the built program, from a folder where the source tree
   cannot be imported, with a scrubbed environment) opens the window offscreen, writes a tiny random
   checkpoint, loads it through the worker, streams a reply and reads it back from the history.
2. The .deb: installed with `dpkg --root` into a temporary root (its own dpkg database; dependencies
   are this machine's, so they are not checked there), its files and menu entry checked
   (`desktop-file-validate`), the installed `/usr/bin/lantern --self-test` run, then removed again
   (nothing may be left behind). `apt-get --simulate` checks its Depends can be met from apt's lists.
3. Sizes and the time from start to visible window (the self-test's `window-shown` line).

Exits 0 when every check passed; prints a summary table (and writes it to --report).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

from bundle_prune import needed  # noqa: E402

SELF_TEST_TIMEOUT_S = 600
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
STEP_LINE = re.compile(r"^(window-shown|checkpoint-written|model-loaded|reply-finished|history-read-back)\b.*"
                       r"\((\d+) ms\)")


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        line = f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else "")
        print(line, flush=True)
        self.lines.append(line)
        if not ok:
            self.failures.append(what)
        return ok

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)


def folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def clean_env(home: Path) -> dict[str, str]:
    """What a desktop session would give the program: no venv, no PYTHONPATH, an empty home."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8",
            "LANTERN_CONFIG_DIR": str(home / "config"), "LANTERN_DATA_DIR": str(home / "data"),
            "XDG_RUNTIME_DIR": str(home / "run")}


def run_self_test(program: Path, report: Report, label: str) -> dict[str, int]:
    """Run `program --self-test` from an empty folder; returns each step's milliseconds."""
    with tempfile.TemporaryDirectory(prefix="lantern-pkgtest-") as tmp:
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        started = time.perf_counter()
        out = subprocess.run([str(program), "--self-test"], cwd=home, env=clean_env(home), capture_output=True,
                             text=True, timeout=SELF_TEST_TIMEOUT_S)
        wall = time.perf_counter() - started
        steps = {m.group(1): int(m.group(2)) for line in out.stdout.splitlines() if (m := STEP_LINE.match(line))}
        for line in out.stdout.splitlines():
            report.note(f"     | {line}")
        ok = out.returncode == 0 and "self-test passed" in out.stdout and len(steps) == 5
        report.check(ok, f"{label}: --self-test", f"exit {out.returncode}, {wall:.1f} s wall")
        if not ok:
            report.note(out.stderr[-4000:])
        report.check("torch-imported=False" in out.stdout, f"{label}: window shown before torch is imported")
        report.check(not (home / "config").exists(), f"{label}: the user's settings folder is left alone")
        return steps


def check_libraries(bundle: Path, report: Report, depends_sonames: set[str] | None = None) -> None:
    """Every NEEDED soname of every bundled ELF file is in the bundle or on this system via a package."""
    names = {p.name for p in bundle.rglob("*")}
    outside: dict[str, int] = {}
    for path in bundle.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            for soname in needed(str(path)):
                if soname not in names:
                    outside[soname] = outside.get(soname, 0) + 1
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    missing = sorted(n for n in outside if f"{n} (" not in ldconfig)
    report.check(not missing, "bundle: every linked library is bundled or installed on this system",
                 ", ".join(missing) or f"{len(outside)} system libraries used: {', '.join(sorted(outside))}")


def largest_parts(bundle: Path, count: int = 8) -> list[tuple[str, int]]:
    internal = bundle / "_internal"
    sizes = []
    for child in internal.iterdir():
        size = folder_bytes(child) if child.is_dir() else child.lstat().st_size
        sizes.append((child.name, size))
    biggest_files = sorted(((str(p.relative_to(internal)), p.stat().st_size) for p in internal.rglob("*")
                            if p.is_file() and not p.is_symlink()), key=lambda t: -t[1])[:3]
    return sorted(sizes, key=lambda t: -t[1])[:count] + [("  largest file: " + n, s) for n, s in biggest_files]


def check_deb(deb: Path, report: Report) -> dict[str, int]:
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    report.note("     | " + info.strip().replace("\n", "\n     | "))
    depends = re.search(r"^Depends: (.*)$", info, re.MULTILINE)
    report.check(bool(depends) and "libxcb-icccm4" in depends.group(1) and "libxcb-keysyms1" in depends.group(1),
                 ".deb: Depends names the xcb libraries Qt needs and does not bundle")
    if shutil.which("apt-get"):
        sim = subprocess.run(["apt-get", "install", "--simulate", "-q", str(deb)], capture_output=True, text=True)
        report.check(sim.returncode == 0, ".deb: apt can satisfy its Depends (apt-get --simulate)",
                     sim.stderr.strip()[-300:] if sim.returncode else "")
    with tempfile.TemporaryDirectory(prefix="lantern-deb-root-") as tmp:
        root = Path(tmp)
        for folder in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "usr/bin"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").touch()
        (root / "var/lib/dpkg/available").touch()
        install = subprocess.run(["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless",
                                  "--no-triggers", "-i", str(deb)], capture_output=True, text=True)
        report.check(install.returncode == 0, ".deb: installs into a temporary root (dpkg --root)",
                     install.stderr.strip()[-500:])
        listed = subprocess.run(["dpkg", f"--root={root}", "-L", "lantern"], capture_output=True, text=True).stdout
        expected = ["/usr/bin/lantern", "/opt/lantern/Lantern", "/usr/share/applications/lantern.desktop",
                    "/usr/share/icons/hicolor/scalable/apps/lantern.svg", "/usr/share/doc/lantern/copyright"]
        expected += [f"/usr/share/icons/hicolor/{n}x{n}/apps/lantern.png" for n in ICON_SIZES]
        absent = [p for p in expected if p not in listed.split("\n") or not (root / p.lstrip("/")).exists()]
        report.check(not absent, ".deb: launcher, bundle, menu entry, icons and copyright are installed",
                     ", ".join(absent))
        desktop = root / "usr/share/applications/lantern.desktop"
        if shutil.which("desktop-file-validate"):
            valid = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
            report.check(valid.returncode == 0 and not valid.stdout.strip(), ".deb: desktop-file-validate",
                         valid.stdout.strip())
        else:
            report.check(False, ".deb: desktop-file-validate", "not installed (apt-get install desktop-file-utils)")
        entry = desktop.read_text()
        report.check("Exec=lantern" in entry and "Icon=lantern" in entry and "Categories=" in entry,
                     ".deb: the menu entry starts `lantern` with Lantern's icon")
        steps = run_self_test(root / "usr/bin/lantern", report, ".deb installed")
        remove = subprocess.run(["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless",
                                 "--no-triggers", "-r", "lantern"], capture_output=True, text=True)
        left = [str(p.relative_to(root)) for p in (root / "opt").rglob("*")] if (root / "opt").exists() else []
        left += [str(p.relative_to(root)) for p in (root / "usr").rglob("*") if p.is_file()]
        report.check(remove.returncode == 0 and not left, ".deb: removes cleanly", ", ".join(left[:5]))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)
    report = Report()
    bundle = args.dist / "Lantern"
    program = bundle / "Lantern"
    if not report.check(program.is_file(), "bundle: dist/Lantern/Lantern exists"):
        return 1
    check_libraries(bundle, report)
    bundle_steps = run_self_test(program, report, "bundle")
    # Once more: the first run reads the files from disk, the second finds them in the page cache.
    warm_steps = run_self_test(program, report, "bundle (second start)")
    debs = sorted(args.dist.glob("lantern_*.deb"))
    deb_steps: dict[str, int] = {}
    if report.check(bool(debs), ".deb: built"):
        deb_steps = check_deb(debs[-1], report)
    size = folder_bytes(bundle)
    report.note("")
    report.note(f"bundle size: {mb(size)} (goal: under 600 MB)")
    report.check(size < 600e6, "bundle: under 600 MB")
    for name, part in largest_parts(bundle):
        report.note(f"  {name:40} {mb(part):>8}")
    if debs:
        report.note(f".deb size: {mb(debs[-1].stat().st_size)} ({debs[-1].name})")
    for label, steps in (("bundle", bundle_steps), ("bundle, second start", warm_steps), (".deb", deb_steps)):
        if "window-shown" in steps:
            report.note(f"start to visible window ({label}): {steps['window-shown']} ms; "
                        + ", ".join(f"{k} {v} ms" for k, v in steps.items() if k != "window-shown"))
    report.note("")
    report.note("package-test: " + ("PASSED" if not report.failures else f"FAILED ({', '.join(report.failures)})"))
    if args.report:
        args.report.write_text("\n".join(report.lines) + "\n")
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
