"""A chat document's text, opened at the lines a citation points to (highlighted)."""

from __future__ import annotations

import html

from PySide6.QtGui import QColor, QFont, QTextCursor, QTextFormat
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QTextEdit, QVBoxLayout, QWidget

HIGHLIGHT = "#fff3b0"


class DocumentViewer(QDialog):
    def __init__(self, title: str, source: str, text: str, first_line: int, last_line: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("documentViewer")
        self.setWindowTitle(f"{title} — lines {first_line + 1}–{last_line + 1}")
        self.resize(760, 560)
        layout = QVBoxLayout(self)
        lines = f"line {first_line + 1}" if first_line == last_line else f"lines {first_line + 1}–{last_line + 1}"
        self.title_label = QLabel(f"<b>{html.escape(title)}</b> — {lines} (highlighted)")
        layout.addWidget(self.title_label)
        self.source_label = QLabel(source)
        self.source_label.setProperty("muted", True)
        self.source_label.setWordWrap(True)
        layout.addWidget(self.source_label)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setAccessibleName("Document text")
        self.view.setFont(QFont("monospace"))
        self.view.setPlainText(text)
        layout.addWidget(self.view, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.first_line, self.last_line = first_line, last_line
        self.highlight(first_line, last_line)

    def highlight(self, first_line: int, last_line: int) -> None:
        doc = self.view.document()
        selections = []
        for line in range(first_line, last_line + 1):
            block = doc.findBlockByNumber(line)
            if not block.isValid():
                break
            sel = QTextEdit.ExtraSelection()
            sel.format.setBackground(QColor(HIGHLIGHT))
            sel.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
            sel.cursor = QTextCursor(block)
            selections.append(sel)
        self.view.setExtraSelections(selections)
        start = doc.findBlockByNumber(max(0, first_line))
        if start.isValid():
            cursor = QTextCursor(start)
            self.view.setTextCursor(cursor)
            self.view.centerCursor()

    def highlighted_text(self) -> str:
        lines = self.view.toPlainText().split("\n")
        return "\n".join(lines[self.first_line:self.last_line + 1])
