"""What the spec leaves out of the bundle (patterns, then libraries nothing links to) and the .deb's
computed Depends, on tiny ELF files built with gcc."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "readelf")),
                                 reason="needs gcc and readelf (binutils)")


def _load(name: str, path: Path):  # noqa: ANN202 - packaging/ is run by path, never imported as a package
    sys.path.insert(0, str(ROOT / "packaging"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


prune_module = _load("bundle_prune", ROOT / "packaging" / "bundle_prune.py")


def _lib(tmp: Path, name: str, links: list[Path] = ()) -> Path:
    src = tmp / (name + ".c")
    src.write_text(f"int f_{abs(hash(name)) % 10_000}(void) {{ return 1; }}\n")
    out = tmp / name
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-Wl,--no-as-needed", "-o", str(out),
                    str(src), *map(str, links)], check=True)
    return out


def test_patterns_drop_test_programs_and_unused_qt_plugins() -> None:
    dropped = prune_module._dropped_by_pattern
    assert dropped("torch/test/test_api") and dropped("torch/bin/protoc") and dropped("torch/bin/test_jit")
    assert not dropped("torch/bin/torch_shm_manager")          # `import torch` checks that it exists
    assert dropped("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so")
    assert dropped("PySide6/Qt/plugins/imageformats/libqpdf.so")
    assert dropped("PySide6/Qt/translations/qt_de.qm")
    for kept in ("platforms/libqxcb.so", "platforms/libqwayland.so", "platforms/libqoffscreen.so",
                 "xcbglintegrations/libqxcb-glx-integration.so", "imageformats/libqsvg.so"):
        assert not dropped("PySide6/Qt/plugins/" + kept)
    # On Windows and macOS the plugin files are named otherwise: all are kept there.
    assert not dropped("PySide6/Qt/plugins/imageformats/qpdf.dll", linux=False)


@needs_tools
def test_libraries_only_a_dropped_plugin_needed_go_too(tmp_path: Path) -> None:
    used = _lib(tmp_path, "libused.so.1")
    quick = _lib(tmp_path, "libQt6Quick.so.6")
    keyboard = _lib(tmp_path, "libqtvirtualkeyboardplugin.so", [quick])
    xcb = _lib(tmp_path, "libqxcb.so", [used])
    python = _lib(tmp_path, "libpython3.11.so.1.0")
    binaries = [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", str(xcb), "BINARY"),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", str(keyboard), "BINARY"),
        ("PySide6/Qt/lib/libQt6Quick.so.6", str(quick), "BINARY"),
        ("libQt6Quick.so.6", "PySide6/Qt/lib/libQt6Quick.so.6", "SYMLINK"),
        ("libused.so.1", str(used), "BINARY"),
        ("libpython3.11.so.1.0", str(python), "BINARY"),   # opened by the bootloader: no NEEDED points at it
    ]
    kept, _, dropped = prune_module.prune(binaries, [], linux=True)
    assert {d for d, _, _ in kept} == {"PySide6/Qt/plugins/platforms/libqxcb.so", "libused.so.1",
                                       "libpython3.11.so.1.0"}
    assert "PySide6/Qt/lib/libQt6Quick.so.6" in dropped and "libQt6Quick.so.6" in dropped


@needs_tools
def test_deb_depends_are_computed_from_what_the_bundle_links(tmp_path: Path) -> None:
    if shutil.which("dpkg") is None or not Path("/sbin/ldconfig").exists():
        pytest.skip("needs dpkg and ldconfig (Debian or Ubuntu)")
    build_deb = _load("build_deb", ROOT / "packaging" / "linux" / "build_deb.py")
    bundle = tmp_path / "Lantern"
    (bundle / "_internal").mkdir(parents=True)
    src = tmp_path / "m.c"
    src.write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-o", str(bundle / "Lantern"), str(src), "-Wl,--no-as-needed", "-lz"], check=True)
    _lib(bundle / "_internal", "libinside.so.1")
    depends, unresolved = build_deb.system_dependencies(bundle)
    assert unresolved == []
    assert "zlib1g" in depends and any(d.startswith("libc6 (>= ") for d in depends)
    control = build_deb.control_file("lantern", "0.1.0", "amd64", depends, 1234)
    assert "\nDepends: " in control and control.endswith("\n") and "Installed-Size: 1234" in control
