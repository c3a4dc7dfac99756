"""Help → About Lantern: the version, what stays private, and the licenses of everything Lantern carries.

The list comes from app.licenses (installed package metadata, or in a build the metadata the build
copied in), so it always matches what is actually shipped. Selecting a row shows its license text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.licenses import Component, components
from app.paths import log_path, resource_path

KIND_LABELS = {"model": "Model", "runtime": "Runtime", "python": "Python package", "system": "System library"}


def app_icon() -> QIcon:
    """Lantern's icon at every committed size (resources/icons)."""
    icon = QIcon()
    folder = resource_path("icons")
    for png in sorted(folder.glob("lantern-*.png")):
        icon.addFile(str(png))
    return icon


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, items: list[Component] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Lantern")
        self.setObjectName("aboutDialog")
        self.resize(860, 640)
        self.components = items if items is not None else components()

        version = QApplication.applicationVersion() or ""
        header = QLabel(
            f"<h2>Lantern {version}</h2>"
            "<p>Private, offline chat with OpenAI's open-weight models gpt-oss-20b and gpt-oss-120b.<br>"
            "Your chats and models stay on this computer; nothing is sent anywhere except a model "
            "download you ask for.</p>"
            f"<p>Log file: {log_path()}</p>"
            "<p><b>What Lantern includes, and under which licenses</b> (from each package's own metadata; "
            "select one to read its license):</p>")
        header.setWordWrap(True)
        header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTreeWidget()
        self.table.setObjectName("licenseTable")
        self.table.setHeaderLabels(["Component", "Version", "License", "Kind"])
        self.table.setRootIsDecorated(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAccessibleName("Licenses of the bundled components")
        for item in self.components:
            row = QTreeWidgetItem([item.name, item.version, item.license, KIND_LABELS.get(item.kind, item.kind)])
            tip = "\n".join(t for t in (item.license, item.url, item.note) if t)
            for column in range(4):
                row.setToolTip(column, tip)
            self.table.addTopLevelItem(row)
        head = self.table.header()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        head.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)

        self.details = QPlainTextEdit()
        self.details.setObjectName("licenseText")
        self.details.setReadOnly(True)
        self.details.setAccessibleName("License text")
        self.table.currentItemChanged.connect(lambda current, _previous: self._show(current))

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setSizes([360, 200])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(split, 1)
        layout.addWidget(buttons)
        if self.components:
            self.table.setCurrentItem(self.table.topLevelItem(0))

    def _show(self, row: QTreeWidgetItem | None) -> None:
        if row is None:
            self.details.clear()
            return
        item = self.components[self.table.indexOfTopLevelItem(row)]
        parts = [f"{item.name} {item.version}".strip(), f"License: {item.license}"]
        if item.url:
            parts.append(f"Home: {item.url}")
        if item.note:
            parts.append(item.note)
        parts.append(item.license_text or "(This package ships no license file; its license is named above.)")
        self.details.setPlainText("\n\n".join(parts))
