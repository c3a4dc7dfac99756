"""The message box: Enter sends, Shift+Enter adds a line; Send turns into Stop while a reply streams.

Beside Send: this chat's reasoning effort and its instructions (with saved presets). Other parts of
the app add their own controls to the row under the box with `add_control(widget)` (attachments,
tools).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.settings import Presets

EFFORTS = ("low", "medium", "high")


class ComposerEdit(QPlainTextEdit):
    send_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return
        super().keyPressEvent(event)


class InstructionsDialog(QDialog):
    """This chat's instructions: type them, pick a saved preset, save them as one, or use the default."""

    def __init__(self, text: str, own: bool, presets: Presets, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Instructions for this chat")
        self.setAccessibleName("Instructions for this chat")
        self.resize(520, 320)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Preset:"))
        self.presets = QComboBox()
        self.presets.setAccessibleName("Instruction presets")
        self.presets.addItem("—", None)
        for name, body in presets:
            self.presets.addItem(name, body)
        self.presets.activated.connect(self._pick)
        row.addWidget(self.presets, 1)
        self.save_button = QPushButton("Save as preset…")
        self.save_button.clicked.connect(self._save)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        self.edit = QPlainTextEdit(text)
        self.edit.setAccessibleName("Instructions")
        self.edit.setPlaceholderText("e.g. Answer concisely. Use British spelling.")
        layout.addWidget(self.edit, 1)
        note = QLabel("Sent to the model with every message of this chat. "
                      + ("This chat has its own." if own else "This chat uses the default from Settings."))
        note.setWordWrap(True)
        note.setProperty("muted", True)
        layout.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.default_button = buttons.addButton("Use the default", QDialogButtonBox.ButtonRole.ResetRole)
        self.default_button.clicked.connect(self._use_default)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.use_default = False
        self.saved: list[tuple[str, str]] = []

    def _pick(self, index: int) -> None:
        body = self.presets.itemData(index)
        if body is not None:
            self.edit.setPlainText(str(body))

    def _save(self) -> None:
        name, ok = QInputDialog.getText(self, "Save as preset", "Name:")
        if ok and name.strip():
            self.saved.append((name.strip(), self.edit.toPlainText()))
            self.presets.addItem(name.strip(), self.edit.toPlainText())

    def _use_default(self) -> None:
        self.use_default = True
        self.accept()


class Composer(QWidget):
    submitted = Signal(str)
    stop_requested = Signal()
    effort_chosen = Signal(str)             # this chat's reasoning effort
    instructions_chosen = Signal(object)    # this chat's instructions (str), or None: the default
    preset_saved = Signal(str, str)         # name, text

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
        side = QVBoxLayout()
        self.button = QPushButton("Send")
        self.button.setAccessibleName("Send message")
        self.button.setMinimumWidth(80)
        self.button.clicked.connect(self._on_button)
        side.addWidget(self.button)
        self.effort = QComboBox()
        self.effort.setObjectName("effortSelector")
        self.effort.setAccessibleName("Reasoning effort for this chat")
        for e in EFFORTS:
            self.effort.addItem(f"Reasoning: {e}", e)
        self.effort.activated.connect(lambda i: self.effort_chosen.emit(str(self.effort.itemData(i))))
        side.addWidget(self.effort)
        row.addLayout(side)
        layout.addLayout(row)
        self.controls = QHBoxLayout()          # extra controls (instructions here; attachments, tools later)
        self.controls.setContentsMargins(0, 0, 0, 0)
        self.instructions_button = QPushButton("Instructions…")
        self.instructions_button.setObjectName("instructionsButton")
        self.instructions_button.setFlat(True)
        self.instructions_button.setAccessibleName("Instructions for this chat")
        self.instructions_button.clicked.connect(self.edit_instructions)
        self.controls.addWidget(self.instructions_button)
        self.controls.addStretch(1)
        layout.addLayout(self.controls)
        self._busy = False
        self._blocked: str | None = None
        self._instructions = ""
        self._own_instructions = False
        self._presets: Presets = ()

    def add_control(self, widget: QWidget) -> None:
        """Another part of the app's control, in the row under the message box (before the stretch)."""
        self.controls.insertWidget(self.controls.count() - 1, widget)

    def set_presets(self, presets: Presets) -> None:
        self._presets = tuple(presets)

    def set_chat_settings(self, effort: str, own_effort: bool, instructions: str, own_instructions: bool) -> None:
        """Show the shown chat's effort and whether its instructions are its own or the default."""
        self.effort.setCurrentIndex(max(0, self.effort.findData(effort)))
        self.effort.setToolTip(f"How long the model reasons before answering, for this chat"
                               f"{'' if own_effort else ' (the default from Settings)'}.")
        self._instructions, self._own_instructions = instructions, own_instructions
        first = instructions.strip().splitlines()[0] if instructions.strip() else ""
        label = "Instructions…" if not first else f"Instructions: {first[:40]}{'…' if len(first) > 40 else ''}"
        self.instructions_button.setText(label + ("" if own_instructions or not first else " (default)"))
        self.instructions_button.setToolTip(instructions or "No instructions: click to give this chat some.")

    def edit_instructions(self) -> None:
        dialog = InstructionsDialog(self._instructions, self._own_instructions, self._presets, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        for name, text in dialog.saved:
            self.preset_saved.emit(name, text)
        self.instructions_chosen.emit(None if dialog.use_default else dialog.edit.toPlainText())

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
