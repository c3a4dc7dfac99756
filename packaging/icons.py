"""Render the app icon (resources/icons/lantern.svg) to the PNG sizes, a Windows .ico and a macOS .icns.

    python packaging/icons.py                  # refresh the committed PNGs in resources/icons/
    python packaging/icons.py --out DIR --ico --icns   # also lantern.ico / lantern.icns (build outputs)

(Run by path: a `packaging` package would shadow the PyPI library of that name, which pip and
PyInstaller import, so packaging/ has no __init__.py.)

Qt's SVG renderer draws the sizes (no extra tool). The .ico and .icns files are written here: both
formats are a small directory of PNG images, so no platform tool (iconutil, ImageMagick) is needed.
"""

from __future__ import annotations

import argparse
import logging
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))     # run by path (see above): app/ is imported from the checkout
SVG = ROOT / "resources" / "icons" / "lantern.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256)     # committed; the freedesktop hicolor sizes
BUILD_SIZES = (512, 1024)                       # made at build time (macOS wants them)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# .icns entry types holding PNG data, by pixel size.
ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09", 1024: b"ic10"}

log = logging.getLogger(__name__)
_APP: object = None


def png_name(size: int) -> str:
    return f"lantern-{size}.png"


def render_png(size: int, svg: Path = SVG) -> bytes:
    """The icon drawn at `size` x `size` pixels, as PNG bytes."""
    from PySide6.QtGui import QGuiApplication

    from app.svg_png import svg_to_png

    global _APP
    if QGuiApplication.instance() is None:
        _APP = QGuiApplication(["icons", "-platform", "offscreen"])  # kept for the life of the process
    png = svg_to_png(svg.read_bytes(), (size, size))
    if png is None:
        raise ValueError(f"{svg} is not a valid SVG")
    return png


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG-compressed images (allowed since Windows Vista)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        data = pngs[size]
        dim = 0 if size >= 256 else size            # 0 means 256 in an ICO directory entry
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns: 'icns' + total length, then (type, length, PNG) entries, big-endian."""
    body = b""
    for size in sorted(pngs):
        kind = ICNS_TYPES.get(size)
        if kind is not None:
            body += kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=SVG.parent, help="folder for the PNGs (default: resources/icons)")
    parser.add_argument("--big", action="store_true", help="also the 512 and 1024 px PNGs")
    parser.add_argument("--ico", action="store_true", help="also lantern.ico")
    parser.add_argument("--icns", action="store_true", help="also lantern.icns")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = PNG_SIZES + (BUILD_SIZES if args.big or args.icns else ())
    pngs = {size: render_png(size) for size in sizes}
    for size in PNG_SIZES + (BUILD_SIZES if args.big else ()):
        (args.out / png_name(size)).write_bytes(pngs[size])
    if args.ico:
        (args.out / "lantern.ico").write_bytes(ico_bytes({s: pngs[s] for s in ICO_SIZES}))
    if args.icns:
        (args.out / "lantern.icns").write_bytes(icns_bytes(pngs))
    log.info("icons written to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
