"""Settings form built from the declared options, one section per `app.settings.SECTIONS`: each row has
its editor and one-line description. Saved instruction presets have their own list in "Chat".

Another part of the app adds a section with `add_section(title, widget)` (e.g. a local API server's
switch); its widget reads and writes its own settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.settings import SECTIONS, Presets, Settings, describe

HIDDEN = ("last_model", "models_dir", "instruction_presets")
"""Set elsewhere: by loading a model, by the Models panel's "Change folder…", by the presets list below."""


class PresetList(QWidget):
    """Saved instructions: add (name + text), rename, delete."""

    def __init__(self, presets: Presets, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget()
        self.list.setAccessibleName("Instruction presets")
        self.list.setMaximumHeight(110)
        layout.addWidget(self.list)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add…")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._ask_add)
        self.remove_button.clicked.connect(self._remove)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.set_presets(presets)

    def set_presets(self, presets: Presets) -> None:
        self.list.clear()
        for name, text in presets:
            self.add(name, text)

    def add(self, name: str, text: str) -> None:
        item = QListWidgetItem(name)
        item.setToolTip(text)
        item.setData(0x0100, text)
        self.list.addItem(item)

    def presets(self) -> Presets:
        return tuple((self.list.item(i).text(), str(self.list.item(i).data(0x0100)))
                     for i in range(self.list.count()))

    def _ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "New preset", "Name:")
        if not ok or not name.strip():
            return
        text, ok = QInputDialog.getMultiLineText(self, "New preset", "Instructions:")
        if ok:
            self.add(name.strip(), text)

    def _remove(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.list.takeItem(row)


class SettingsDialog(QDialog):
    """Edits a copy of Settings; `result_settings()` gives the edited copy after accept()."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self.resize(580, 680)
        self._original = settings
        self.editors: dict[str, QWidget] = {}
        outer = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        self._sections_layout = QVBoxLayout(body)
        self.sections: dict[str, QGroupBox] = {}
        forms: dict[str, QFormLayout] = {}
        for title in SECTIONS:
            box = QGroupBox(title)
            box.setAccessibleName(f"{title} settings")
            forms[title] = QFormLayout(box)
            self.sections[title] = box
            self._sections_layout.addWidget(box)
        for f in dataclasses.fields(Settings):
            if f.name in HIDDEN:
                continue
            meta = describe(f.name)
            editor = self._editor(f.name, getattr(settings, f.name), meta)
            editor.setAccessibleName(meta["label"] or f.name)
            editor.setAccessibleDescription(meta["desc"])
            editor.setToolTip(meta["desc"])
            self.editors[f.name] = editor
            cell = QWidget()
            lay = QVBoxLayout(cell)
            lay.setContentsMargins(0, 0, 0, 6)
            lay.addWidget(editor)
            desc = QLabel(meta["desc"])
            desc.setWordWrap(True)
            desc.setProperty("muted", True)
            lay.addWidget(desc)
            forms[meta.get("section") or "Chat"].addRow(meta["label"] or f.name, cell)
        self.presets = PresetList(settings.instruction_presets)
        forms["Chat"].addRow("Instruction presets", self.presets)
        self._sections_layout.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        outer.addWidget(buttons)

    def add_section(self, title: str, widget: QWidget) -> QGroupBox:
        """A section of the app's own (before the stretch at the end)."""
        box = QGroupBox(title)
        box.setAccessibleName(f"{title} settings")
        QVBoxLayout(box).addWidget(widget)
        self._sections_layout.insertWidget(self._sections_layout.count() - 1, box)
        self.sections[title] = box
        return box

    @staticmethod
    def _editor(name: str, value: Any, meta: dict[str, Any]) -> QWidget:
        default = meta["default"]
        if meta["choices"]:
            combo = QComboBox()
            combo.addItems([str(c) for c in meta["choices"]])
            combo.setCurrentText(str(value))
            return combo
        if isinstance(default, bool):
            box = QCheckBox()
            box.setChecked(bool(value))
            return box
        if isinstance(default, int):
            spin = QSpinBox()
            spin.setRange(int(meta["min"] or 0), int(meta["max"] or 1_000_000))
            spin.setValue(int(value))
            if name == "context_length":
                spin.setSingleStep(1024)
            return spin
        if isinstance(default, float):
            dspin = QDoubleSpinBox()
            dspin.setRange(float(meta["min"] or 0.0), float(meta["max"] or 100.0))
            dspin.setSingleStep(0.05)
            dspin.setDecimals(2)
            dspin.setValue(float(value))
            return dspin
        if name == "instructions":
            text = QPlainTextEdit(str(value))
            text.setPlaceholderText("e.g. Answer concisely. Use British spelling.")
            text.setFixedHeight(90)
            return text
        line = QLineEdit(str(value))
        return line

    def _set(self, name: str, value: Any) -> None:
        e = self.editors[name]
        if isinstance(e, QComboBox):
            e.setCurrentText(str(value))
        elif isinstance(e, QCheckBox):
            e.setChecked(bool(value))
        elif isinstance(e, (QSpinBox, QDoubleSpinBox)):
            e.setValue(value)
        elif isinstance(e, QPlainTextEdit):
            e.setPlainText(str(value))
        elif isinstance(e, QLineEdit):
            e.setText(str(value))

    def restore_defaults(self) -> None:
        """Every option back to its default; saved presets are kept (they are the user's, not options)."""
        for name in self.editors:
            self._set(name, describe(name)["default"])

    def result_settings(self) -> Settings:
        values: dict[str, Any] = {}
        for name, e in self.editors.items():
            if isinstance(e, QComboBox):
                values[name] = e.currentText()
            elif isinstance(e, QCheckBox):
                values[name] = e.isChecked()
            elif isinstance(e, QSpinBox):
                values[name] = int(e.value())
            elif isinstance(e, QDoubleSpinBox):
                values[name] = float(e.value())
            elif isinstance(e, QPlainTextEdit):
                values[name] = e.toPlainText()
            elif isinstance(e, QLineEdit):
                values[name] = e.text().strip()
        values["instruction_presets"] = self.presets.presets()
        return dataclasses.replace(self._original, **values)
