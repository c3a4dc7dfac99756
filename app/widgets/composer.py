"""The message box: Enter sends, Shift+Enter adds a line; Send turns into Stop while a reply streams."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


class ComposerEdit(QPlainTextEdit):
    send_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    submitted = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 4, 12, 8)
        self.reason_label = QLabel("")
        self.reason_label.setProperty("muted", True)
        self.reason_label.setWordWrap(True)
        self.reason_label.setAccessibleName("Why sending is disabled")
        layout.addWidget(self.reason_label)
        row = QHBoxLayout()
        self.edit = ComposerEdit()
        self.edit.setObjectName("composer")
        self.edit.setPlaceholderText("Message the model — Enter to send, Shift+Enter for a new line")
        self.edit.setAccessibleName("Message")
        self.edit.setFixedHeight(72)
        self.edit.send_requested.connect(self._on_send)
        row.addWidget(self.edit, 1)
        self.button = QPushButton("Send")
        self.button.setAccessibleName("Send message")
        self.button.setMinimumWidth(80)
        self.button.clicked.connect(self._on_button)
        row.addWidget(self.button)
        layout.addLayout(row)
        self._busy = False
        self._blocked: str | None = None

    def set_state(self, busy: bool, block_reason: str | None) -> None:
        """busy: a reply streams (button = Stop). block_reason: why sending is impossible, or None."""
        self._busy, self._blocked = busy, block_reason
        self.reason_label.setText(block_reason or "")
        self.reason_label.setVisible(block_reason is not None)
        self.edit.setEnabled(block_reason is None)
        if busy:
            self.button.setText("Stop")
            self.button.setAccessibleName("Stop generating (Esc)")
            self.button.setEnabled(True)
        else:
            self.button.setText("Send")
            self.button.setAccessibleName("Send message")
            self.button.setEnabled(block_reason is None)

    def _on_button(self) -> None:
        if self._busy:
            self.stop_requested.emit()
        else:
            self._on_send()

    def _on_send(self) -> None:
        text = self.edit.toPlainText()
        if self._busy or self._blocked is not None or not text.strip():
            return
        self.submitted.emit(text)

    def clear(self) -> None:
        self.edit.clear()
