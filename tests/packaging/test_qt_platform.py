"""The check `make run` (and every start) does before Qt: a platform plugin that cannot load gives one
readable line with the install command, not Qt's abort."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import qt_platform
from app.qt_platform import PlatformProblem, candidate_platforms, check, debian_package_for, packages_for

ROOT = Path(__file__).resolve().parents[2]
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None,
                               reason="needs gcc and ldd to build a plugin with a missing library")


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),     # the stem ends in a digit: a dash before the number
    ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libEGL.so.1", "libegl1"),
    ("libdbus-1.so.3", "libdbus-1-3"),
    ("libgssapi_krb5.so.2", "libgssapi-krb5-2"),
    ("libglib-2.0.so.0", "libglib2.0-0"),                # an exception to the rule
])
def test_debian_package_names(soname: str, package: str) -> None:
    assert debian_package_for(soname) == package


def test_t64_names_are_used_where_apt_only_knows_those() -> None:
    known = {"libxcb-icccm4", "libglib2.0-0t64"}
    assert packages_for(["libxcb-icccm.so.4", "libglib-2.0.so.0", "libgio-2.0.so.0"],
                        apt_knows=lambda name: name in known) == ("libxcb-icccm4", "libglib2.0-0t64")
    # Without apt (another distribution) the rule's names are given as they are.
    assert packages_for(["libxcb-keysyms.so.1"], apt_knows=lambda name: None) == ("libxcb-keysyms1",)


def test_platforms_qt_will_try() -> None:
    assert candidate_platforms({}) == ["xcb"]
    assert candidate_platforms({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}) == ["wayland", "xcb"]
    assert candidate_platforms({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert candidate_platforms({"QT_QPA_PLATFORM": "offscreen:fontengine=freetype"}) == ["offscreen"]


def test_headless_and_other_systems_are_not_checked(tmp_path: Path) -> None:
    assert check({"QT_QPA_PLATFORM": "offscreen"}, plugins=tmp_path) is None
    assert check({}, plugins=tmp_path, platform="win32") is None


def test_no_display_is_said_plainly(tmp_path: Path) -> None:
    problem = check({}, plugins=tmp_path)
    assert problem is not None and "DISPLAY is not set" in problem.message()
    assert "\n" not in problem.message()


def test_a_missing_plugin_file_says_reinstall(tmp_path: Path) -> None:
    (tmp_path / "platforms").mkdir()
    problem = check({"DISPLAY": ":0"}, plugins=tmp_path)
    assert problem is not None and "reinstall Lantern" in problem.message()


def _plugin_with_missing_library(tmp_path: Path) -> Path:
    """plugins/platforms/libqxcb.so linked against liblanternmissing.so.4, which is then deleted."""
    stub = tmp_path / "stub.c"
    stub.write_text("int lantern_missing_symbol(void) { return 4; }\n")
    plug = tmp_path / "plugin.c"
    plug.write_text("int lantern_missing_symbol(void);\nint qt_plugin_probe(void) { return lantern_missing_symbol(); }\n")
    lib = tmp_path / "liblanternmissing.so.4"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,liblanternmissing.so.4", "-o", str(lib), str(stub)],
                   check=True)
    plugins = tmp_path / "plugins"
    (plugins / "platforms").mkdir(parents=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(plugins / "platforms" / "libqxcb.so"),
                    str(plug), str(lib)], check=True)
    lib.unlink()
    return plugins


@needs_gcc
def test_missing_libraries_are_named_with_their_packages(tmp_path: Path) -> None:
    plugins = _plugin_with_missing_library(tmp_path)
    problem = check({"DISPLAY": ":0"}, plugins=plugins, apt_knows=lambda name: None)
    assert problem == PlatformProblem("xcb", ("liblanternmissing.so.4",), ("liblanternmissing4",))
    line = problem.message()
    assert "\n" not in line
    assert "liblanternmissing.so.4" in line and line.endswith("Install them with: sudo apt install liblanternmissing4")


@needs_gcc
def test_a_plugin_that_loads_passes(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "platforms").mkdir(parents=True)
    (tmp_path / "ok.c").write_text("int qt_plugin_probe(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugins / "platforms" / "libqxcb.so"), str(tmp_path / "ok.c")],
                   check=True)
    assert check({"DISPLAY": ":0"}, plugins=plugins) is None


@needs_gcc
def test_the_app_stops_with_one_line_instead_of_qts_abort(tmp_path: Path) -> None:
    """`python -m app` (what `make run` starts) on a desktop whose xcb plugin lacks a library."""
    plugins = _plugin_with_missing_library(tmp_path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DISPLAY": ":0", "QT_PLUGIN_PATH": str(plugins),
           "LANTERN_CONFIG_DIR": str(tmp_path / "c"), "LANTERN_DATA_DIR": str(tmp_path / "d"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Lantern cannot open its window:"), out.stderr
    assert "liblanternmissing.so.4" in lines[-1] and "liblanternmissing4" in lines[-1]
    assert "could not load the Qt platform plugin" not in out.stderr


def test_main_reports_and_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(qt_platform, "check", lambda env=None: PlatformProblem("xcb", reason="no display."))
    assert qt_platform.main([]) == 1
    assert capsys.readouterr().err.strip() == "Lantern cannot open its window: no display."


def test_build_check_covers_every_shipped_desktop_plugin(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def fake_check(env=None):  # noqa: ANN001, ANN202
        seen.append(env["QT_QPA_PLATFORM"])
        return PlatformProblem("wayland", ("libwayland-egl.so.1",), ("libwayland-egl1",)) \
            if env["QT_QPA_PLATFORM"] == "wayland" else None

    monkeypatch.setattr(qt_platform, "check", fake_check)
    assert qt_platform.main(["--build"]) == 1
    assert seen == ["xcb", "wayland"]
    assert "sudo apt install libwayland-egl1" in capsys.readouterr().err
