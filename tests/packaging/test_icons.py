"""The app icon: the committed PNGs are the SVG's sizes, and the .ico/.icns writers make valid files."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _icons_module():  # noqa: ANN202 - packaging/ is run by path (it would shadow the PyPI `packaging`)
    spec = importlib.util.spec_from_file_location("lantern_icons", ROOT / "packaging" / "icons.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_committed_pngs_have_their_sizes(qapp) -> None:  # noqa: ANN001
    from PySide6.QtGui import QImage

    icons = _icons_module()
    for size in icons.PNG_SIZES:
        image = QImage(str(ROOT / "resources" / "icons" / icons.png_name(size)))
        assert (image.width(), image.height()) == (size, size)


def test_ico_and_icns_layout(qapp) -> None:  # noqa: ANN001
    icons = _icons_module()
    pngs = {s: icons.render_png(s) for s in (16, 32, 256)}
    ico = icons.ico_bytes(pngs)
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind, count) == (0, 1, 3)
    width, _, _, _, _, _, length, offset = struct.unpack("<BBBBHHII", ico[6 + 32:6 + 48])  # the 256 px entry
    assert width == 0 and ico[offset:offset + length] == pngs[256]
    icns = icons.icns_bytes(pngs)
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    assert b"ic08" in icns and pngs[256] in icns
