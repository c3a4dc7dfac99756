"""The chat's attachments (a row of chips over the message box) and the tools' controls (attach
buttons and the per-chat Python switch, `controls`, which go in the composer's row under the box:
`Composer.add_control`).

Files and folders can also be dropped on the chat (`install_drop_target`). Each attachment is a
chip saying how it is used (sent with the next message, or searchable by the browser tool) with a
remove button. The Python switch explains what the sandbox does and does not isolate before it is
turned on (`confirm_python`, replaceable in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

PYTHON_SWITCH_TEXT = "Let the model run Python on this computer"


def chip_text(attachment: Any) -> str:
    name = f"{attachment.name}/" if attachment.kind == "folder" else attachment.name
    if attachment.inline:
        use = "sent with your next message" if attachment.message_id is None else "in the chat"
    else:
        n = len(attachment.doc_ids)
        use = f"searchable ({n} file{'s' if n != 1 else ''})" if attachment.kind == "folder" else "searchable"
    stored = "copy kept" if attachment.mode == "stored" else "linked"
    return f"{name} · {use} · {stored}"


class AttachmentsBar(QWidget):
    files_chosen = Signal(list)          # [str]: paths picked or dropped
    remove_requested = Signal(int)       # attachment id
    python_toggled = Signal(bool)
    always_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentsBar")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 2, 12, 0)
        outer.setSpacing(2)
        self.chips_row = QWidget()
        self._chips = QHBoxLayout(self.chips_row)
        self._chips.setContentsMargins(0, 0, 0, 0)
        self._chips.addStretch(1)
        outer.addWidget(self.chips_row)
        self.controls = QWidget()          # placed by the window under the message box
        self.controls.setObjectName("toolControls")
        row = QHBoxLayout(self.controls)
        row.setContentsMargins(0, 0, 0, 0)
        self.attach_button = QToolButton()
        self.attach_button.setText("Attach…")
        self.attach_button.setAccessibleName("Attach files or a folder")
        self.attach_button.setToolTip("Attach files or a folder (or drop them on the chat)")
        self.attach_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.attach_button)
        self.files_action = menu.addAction("Files…", self.pick_files)
        self.folder_action = menu.addAction("Folder…", self.pick_folder)
        self.attach_button.setMenu(menu)
        row.addWidget(self.attach_button)
        self.keep_copy = QCheckBox("Keep a copy")
        self.keep_copy.setToolTip("Store a copy of attached files with the chat (otherwise Lantern keeps only "
                                  "their location and the text it read)")
        self.keep_copy.setChecked(True)
        row.addWidget(self.keep_copy)
        self.status_label = QLabel("")
        self.status_label.setProperty("muted", True)
        row.addWidget(self.status_label)
        row.addSpacing(12)
        self.python_switch = QCheckBox(PYTHON_SWITCH_TEXT)
        self.python_switch.setObjectName("pythonSwitch")
        self.python_switch.setAccessibleName(PYTHON_SWITCH_TEXT)
        self.python_switch.clicked.connect(self._on_python_clicked)
        row.addWidget(self.python_switch)
        self.always_box = QCheckBox("Run without asking")
        self.always_box.setToolTip("Allow for this chat: Python runs without asking each time")
        self.always_box.clicked.connect(lambda checked: self.always_toggled.emit(bool(checked)))
        row.addWidget(self.always_box)
        self.isolation_button = QToolButton()
        self.isolation_button.setText("What is isolated?")
        self.isolation_button.setAutoRaise(True)
        self.isolation_button.setAccessibleName("What the Python sandbox isolates")
        self.isolation_button.clicked.connect(
            lambda: QMessageBox.information(self, "The Python sandbox", self._isolation_text))
        row.addWidget(self.isolation_button)
        self._isolation_text = ""
        self.confirm_python: Callable[[str], bool] = self._ask_python
        self.chip_buttons: dict[int, QToolButton] = {}
        self.set_python(False, False)

    # -- state --------------------------------------------------------------------------------------

    def set_isolation(self, text: str) -> None:
        self._isolation_text = text
        self.isolation_button.setToolTip(text)
        self.python_switch.setToolTip(text)

    def set_attachments(self, attachments: list[Any]) -> None:
        for button in self.chip_buttons.values():
            button.setParent(None)
            button.deleteLater()
        self.chip_buttons = {}
        for a in attachments:
            chip = QToolButton()
            chip.setObjectName("attachmentChip")
            chip.setText(f"{chip_text(a)}  ✕")
            chip.setToolTip(f"{a.source_path}" + (f"\n{a.note}" if a.note else "") + "\nClick to remove")
            chip.setAccessibleName(f"Remove attachment {a.name}")
            chip.clicked.connect(lambda _=False, i=a.id: self.remove_requested.emit(i))
            self._chips.insertWidget(self._chips.count() - 1, chip)
            self.chip_buttons[a.id] = chip
        self.chips_row.setVisible(bool(attachments))
        self.setVisible(bool(attachments))

    def set_python(self, enabled: bool, always: bool) -> None:
        self.python_switch.setChecked(enabled)
        self.always_box.setChecked(always and enabled)
        self.always_box.setVisible(enabled)

    def set_busy(self, busy: bool) -> None:
        self.status_label.setText("Reading…" if busy else "")

    # -- actions ------------------------------------------------------------------------------------

    def pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Attach files", str(Path.home()))
        if files:
            self.files_chosen.emit(list(files))

    def pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Attach a folder", str(Path.home()))
        if folder:
            self.files_chosen.emit([folder])

    def _ask_python(self, text: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Let the model run Python?", text,
                          QMessageBox.StandardButton.NoButton, self)
        box.setInformativeText("Each run asks first, unless you choose “Allow for this chat”.")
        yes = box.addButton("Turn on", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Cancel", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is yes

    def _on_python_clicked(self, checked: bool) -> None:
        if checked and not self.confirm_python(self._isolation_text):
            self.python_switch.setChecked(False)
            return
        self.always_box.setVisible(checked)
        self.python_toggled.emit(bool(checked))

    def install_drop_target(self, widget: QWidget) -> None:
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if event.mimeData().hasUrls():
                event.acceptProposedAction()
                return True
        elif event.type() == QEvent.Type.Drop and event.mimeData().hasUrls():
            paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
            if paths:
                self.files_chosen.emit(paths)
            event.acceptProposedAction()
            return True
        return super().eventFilter(watched, event)

