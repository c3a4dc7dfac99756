"""Light and dark palettes (Fusion style, so they look the same on every OS) and the chat font size."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.render import DARK, LIGHT, Palette


def is_dark(theme: str) -> bool:
    """Resolve "system" with the OS colour scheme (light when the platform does not say)."""
    if theme == "dark":
        return True
    if theme == "light":
        return False
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def _qt_palette(p: Palette, dark: bool) -> QPalette:
    pal = QPalette()
    base = QColor("#0d1117" if dark else "#ffffff")
    alt = QColor("#161b22" if dark else "#f6f8fa")
    text = QColor(p.text)
    pal.setColor(QPalette.ColorRole.Window, alt)
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, alt)
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, QColor("#21262d" if dark else "#f3f4f6"))
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.ToolTipBase, alt)
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(p.muted))
    pal.setColor(QPalette.ColorRole.Highlight, QColor("#1f6feb" if dark else "#0969da"))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.Link, QColor(p.link))
    pal.setColor(QPalette.ColorRole.Mid, QColor(p.code_border))
    pal.setColor(QPalette.ColorRole.Midlight, QColor(p.code_border))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(p.muted))
    return pal


def apply_theme(app: QApplication, theme: str) -> Palette:
    """Set the application palette; return the matching palette for rendered messages."""
    dark = is_dark(theme)
    palette = DARK if dark else LIGHT
    app.setStyle("Fusion")
    app.setPalette(_qt_palette(palette, dark))
    return palette


def stylesheet(p: Palette, font_size: int) -> str:
    """Small touches the palette cannot express: message cards, muted labels."""
    return f"""
    QFrame#message {{ border: none; border-radius: 8px; }}
    QFrame#message[role="user"] {{ background: {p.code_bg}; border: 1px solid {p.code_border}; }}
    QLabel[muted="true"] {{ color: {p.muted}; }}
    QLabel#error {{ color: #cf222e; }}
    QTextBrowser {{ background: transparent; border: none; font-size: {font_size}pt; }}
    QPlainTextEdit#composer {{ font-size: {font_size}pt; border: 1px solid {p.code_border}; border-radius: 6px;
                               padding: 4px; }}
    QToolButton#reasoningToggle {{ color: {p.muted}; border: none; text-align: left; }}
    QToolButton#toolCallToggle {{ color: {p.muted}; border: none; text-align: left; }}
    QTextBrowser#toolCallArguments {{ border: none; border-left: 3px solid {p.code_border}; }}
    QFrame#reasoning {{ border: none; border-left: 3px solid {p.code_border}; }}
    QLineEdit {{ border: 1px solid {p.code_border}; border-radius: 4px; padding: 3px; }}
    QListWidget {{ border: 1px solid {p.code_border}; border-radius: 4px; }}
    QListWidget::item {{ padding: 4px 2px; }}
    QLabel#note {{ color: {p.muted}; font-style: italic; }}
    QLabel#emptyNote {{ color: {p.muted}; font-size: {font_size + 1}pt; }}
    QLabel#banner {{ background: #fff8c5; color: #3b2300; padding: 6px; border-radius: 4px; }}
    QLabel#banner[kind="bug"] {{ background: #ffebe9; color: #5c0a0a; border: 1px solid #cf222e; }}
    QLabel#banner[kind="info"] {{ background: #ddf4ff; color: #0a3069; }}
    QLabel#interrupted {{ color: #9a6700; font-weight: bold; }}
    QLabel#progress {{ color: {p.muted}; font-style: italic; }}
    QFrame#loadingCard {{ background: {p.code_bg}; border-bottom: 1px solid {p.code_border}; }}
    QPushButton#showAll, QPushButton#instructionsButton {{ color: {p.link}; border: none; text-align: left; }}
    """
