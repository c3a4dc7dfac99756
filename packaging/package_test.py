"""`make package-test`: check the built program and the .deb as a user's machine would run them.

    python packaging/package_test.py [--dist dist] [--report dist/package-test.txt]

1. The bundle: every library a bundled file links to is either in the bundle or installed here (and
   the .deb's Depends names its package); it carries the xcb libraries Qt's plugin needs;
   `dist/Lantern/Lantern --self-test` (the built program, from a folder where the source tree
   cannot be imported, with a scrubbed environment) opens the window offscreen, writes a tiny random
   checkpoint, loads it through the worker, streams a reply and reads it back from the history. Then the
   same on an X11 display (Xvfb), in a mount namespace where libxcb-icccm4, libxcb-keysyms1 and the other
   xcb extras are hidden (overlayfs whiteouts): a desktop without them.
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
# The self-test's steps (app/self_test.py), then the lazily loaded parts (app/self_test_features.py).
STEPS = ("window-shown", "checkpoint-written", "model-loaded", "reply-finished", "history-read-back",
         "math-drawn", "api-models", "api-chat", "documents-searched", "python-ran", "keyring-backend")
STEP_LINE = re.compile(r"^(" + "|".join(STEPS) + r")\b.*\((\d+) ms\)(?! FAILED)$")


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
        ok = out.returncode == 0 and "self-test passed" in out.stdout and set(steps) == set(STEPS)
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


GLIBC = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libnsl|libanl|ld-linux[-\w]*)\.so")


def outside_sonames(bundle: Path) -> set[str]:
    names = {p.name for p in bundle.rglob("*")}
    outside: set[str] = set()
    for path in bundle.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            outside.update(n for n in needed(str(path)) if n not in names)
    return outside


def outside_packages(bundle: Path) -> dict[str, str]:
    """soname -> the Debian package that provides it here (libc6 for glibc's own)."""
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    result = {}
    for soname in sorted(outside_sonames(bundle)):
        if GLIBC.match(soname):
            result[soname] = "libc6"
            continue
        match = re.search(rf"^\s*{re.escape(soname)} \([^)]*x86-64[^)]*\) => (\S+)", ldconfig, re.MULTILINE) \
            or re.search(rf"^\s*{re.escape(soname)} \([^)]*\) => (\S+)", ldconfig, re.MULTILINE)
        owner = "?"
        if match:
            out = subprocess.run(["dpkg", "-S", os.path.realpath(match.group(1))], capture_output=True, text=True)
            if out.returncode != 0:
                out = subprocess.run(["dpkg", "-S", match.group(1)], capture_output=True, text=True)
            if out.returncode == 0:
                owner = out.stdout.split(":")[0].split(",")[0].strip()
        result[soname] = owner
    return result


# What Qt's xcb plugin needs beyond libxcb1 and that a fresh desktop often lacks: the bundle carries them.
XCB_EXTRAS = ("libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0", "libxcb-render-util.so.0",
              "libxcb-image.so.0", "libxkbcommon-x11.so.0")


def check_xcb_libraries(bundle: Path, report: Report) -> None:
    names = {p.name for p in bundle.rglob("*")}
    absent = [n for n in XCB_EXTRAS if n not in names]
    report.check(not absent, "bundle: carries the xcb libraries Qt's xcb plugin needs", ", ".join(absent))


def run_on_a_desktop_without_them(program: Path, report: Report) -> None:
    """The bundle on an X11 display (Xvfb) in a mount namespace where those libraries are hidden."""
    libdir = Path("/usr/lib/x86_64-linux-gnu")
    tools = [shutil.which(t) for t in ("unshare", "Xvfb", "mount")]
    if os.geteuid() != 0 or not all(tools) or not libdir.is_dir():
        report.note("skip bundle on X11 without the xcb packages: needs root, unshare, mount and Xvfb")
        return
    hidden = sorted(p.name for n in XCB_EXTRAS for p in libdir.glob(n.split(".so")[0] + ".so*"))
    with tempfile.TemporaryDirectory(prefix="lantern-fresh-") as tmp:
        home = Path(tmp)
        (home / "run").mkdir(mode=0o700)
        upper, work = home / "upper", home / "work"
        upper.mkdir()
        work.mkdir()
        for name in hidden:   # overlayfs whiteouts: these files are absent inside the namespace
            os.mknod(upper / name, 0o600 | 0o020000, os.makedev(0, 0))
        display = ":73"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            env = clean_env(home)
            env.pop("QT_QPA_PLATFORM")
            env["DISPLAY"] = display
            script = (f"mount -t overlay overlay -o lowerdir={libdir},upperdir={upper},workdir={work} {libdir} && "
                      f"test ! -e {libdir}/libxcb-icccm.so.4 && exec {program} --self-test")
            out = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=home, env=env, capture_output=True,
                                 text=True, timeout=SELF_TEST_TIMEOUT_S)
        finally:
            xvfb.terminate()
            xvfb.wait(timeout=10)
        for line in out.stdout.splitlines():
            report.note(f"     | {line}")
        report.check(out.returncode == 0 and "self-test passed" in out.stdout,
                     "bundle: starts on an X11 desktop (Xvfb) where " + ", ".join(hidden[:3]) + "… are not installed",
                     f"exit {out.returncode}" + ("" if out.returncode == 0 else ": " + out.stderr[-1500:]))


def check_licenses(program: Path, report: Report) -> None:
    """`Lantern --licenses` from the build: the About dialog's list, from the metadata the build carries."""
    out = subprocess.run([str(program), "--licenses"], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()})
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.count("\t") == 3]
    by_name = {name.lower(): (kind, lic) for kind, name, _, lic in rows}
    wanted = {"pyside6": "LGPL-3.0", "torch": "BSD-3-Clause", "python": "PSF-2.0", "lantern": "Apache-2.0",
              "tiktoken": "MIT", "libxcb-icccm4": ""}
    wrong = [n for n, lic in wanted.items() if n not in by_name or lic not in by_name[n][1]]
    model = [r for r in rows if r[0] == "model" and r[3] == "Apache-2.0"]
    left_out = [n for n in ("sympy", "pydantic", "pyside6_webengine", "hf-xet", "pytest") if n in by_name]
    report.check(out.returncode == 0 and bool(model) and not wrong and not left_out,
                 "bundle: --licenses lists the models, Qt, torch, Python and the bundled system libraries, "
                 "and nothing left out of the build",
                 f"{len(rows)} components" + (f"; wrong or missing: {wrong}" if wrong else "")
                 + (f"; listed but not bundled: {left_out}" if left_out else ""))


def check_deb(deb: Path, bundle: Path, report: Report) -> dict[str, int]:
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    report.note("     | " + info.strip().replace("\n", "\n     | "))
    depends = re.search(r"^Depends: (.*)$", info, re.MULTILINE)
    named = {d.split()[0] for d in depends.group(1).split(", ")} if depends else set()
    uncovered = [f"{soname} ({package})" for soname, package in outside_packages(bundle).items()
                 if package not in named]
    report.check(bool(depends) and not uncovered,
                 ".deb: Depends names the package of every library the bundle needs and does not carry",
                 ", ".join(uncovered))
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
                     install.stderr.strip()[-500:] if install.returncode else "")
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
    check_xcb_libraries(bundle, report)
    check_licenses(program, report)
    bundle_steps = run_self_test(program, report, "bundle")
    # Once more: the first run reads the files from disk, the second finds them in the page cache.
    warm_steps = run_self_test(program, report, "bundle (second start)")
    run_on_a_desktop_without_them(program, report)
    debs = sorted(args.dist.glob("lantern_*.deb"))
    deb_steps: dict[str, int] = {}
    if report.check(bool(debs), ".deb: built"):
        deb_steps = check_deb(debs[-1], bundle, report)
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
