"""Settings form built from the declared options: each row has its editor and one-line description."""

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
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings, describe

HIDDEN = ("last_model", "models_dir")  # set by loading a model / by the Models panel's "Change folder…"


class SettingsDialog(QDialog):
    """Edits a copy of Settings; `result_settings()` gives the edited copy after accept()."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self.resize(560, 640)
        self._original = settings
        self.editors: dict[str, QWidget] = {}
        outer = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        form = QFormLayout(body)
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
            form.addRow(meta["label"] or f.name, cell)
        scroll.setWidget(body)
        outer.addWidget(scroll)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        outer.addWidget(buttons)

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
        return dataclasses.replace(self._original, **values)
