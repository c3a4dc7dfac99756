"""An SVG document painted into a transparent PNG with Qt's SVG renderer (math in replies, the app icon).

Any thread: it paints a QImage, not a widget. Text in the SVG needs a QGuiApplication for its fonts; the
callers' SVGs hold paths only.
"""

from __future__ import annotations


def svg_to_png(svg: bytes, size: tuple[int, int] | None = None) -> bytes | None:
    """PNG bytes of `svg` drawn at `size` (width, height; default: the document's own size), or None when
    Qt cannot read it."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(svg))
    target = QSize(*size) if size is not None else renderer.defaultSize()
    if not renderer.isValid() or target.isEmpty():
        return None
    image = QImage(target, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        return None
    return bytes(buffer.data().data())
