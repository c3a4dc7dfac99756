"""Conversation list: new, search (titles and messages, full text), rename, delete; newest first.

The list is rebuilt only when what it shows changed: a reply that finishes in the chat at the top
(the usual case) changes nothing, and a chat moving to the top moves one row, so a history of
thousands of chats costs nothing per message.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1


class Sidebar(QWidget):
    new_requested = Signal()
    open_requested = Signal(int)             # conversation id
    hit_requested = Signal(int, int)         # conversation id, message id (a search hit in a message)
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    search_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(220)
        self.setMaximumWidth(360)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        self.new_button = QPushButton("+ New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        layout.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats (Ctrl+F)")
        self.search.setAccessibleName("Search chats")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_menu)
        self.list.itemActivated.connect(self._on_activated)
        self.list.itemClicked.connect(self._on_activated)
        self.list.setWordWrap(True)
        # Thousands of chats: rows all of one height, laid out 50 at a time between other events.
        self.list.setUniformItemSizes(True)
        self.list.setLayoutMode(QListWidget.LayoutMode.Batched)
        self.list.setBatchSize(50)
        layout.addWidget(self.list, 1)
        self._shown: list[tuple[int, str]] = []     # (id, title) of the conversations listed, in order
        self._showing_hits = False
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(150)
        self._debounce.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _: self._debounce.start())
        self._current: int | None = None
        # Keyboard: F2 renames, Delete deletes the selected chat (while the list has focus).
        for keys, slot in (("F2", self._rename_selected), (QKeySequence.StandardKey.Delete, self._delete_selected)):
            shortcut = QShortcut(QKeySequence(keys), self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)

    def _selected(self) -> tuple[int, str] | None:
        item = self.list.currentItem()
        if item is None or item.data(ID_ROLE) is None:
            return None
        return int(item.data(ID_ROLE)), item.text().split("\n")[0]

    def _rename_selected(self) -> None:
        if (selected := self._selected()) is not None:
            self.ask_rename(*selected)

    def _delete_selected(self) -> None:
        if (selected := self._selected()) is not None:
            self.ask_delete(*selected)

    @property
    def query(self) -> str:
        return self.search.text().strip()

    @staticmethod
    def _conversation_item(c: Any) -> QListWidgetItem:
        item = QListWidgetItem(c.title or "New chat")
        item.setData(ID_ROLE, c.id)
        item.setToolTip(c.title or "")
        return item

    def show_conversations(self, conversations: list[Any], current: int | None) -> None:
        self._current = current
        wanted = [(int(c.id), c.title or "") for c in conversations]
        if self._showing_hits or wanted != self._shown:
            if not self._showing_hits and len(wanted) >= 1 and wanted[1:] == [x for x in self._shown if x != wanted[0]
                                                                            and x[0] != wanted[0][0]]:
                # one chat moved to (or appeared at) the top, or was renamed there: move one row
                old = next((i for i, x in enumerate(self._shown) if x[0] == wanted[0][0]), None)
                if old is not None:
                    self.list.takeItem(old)
                self.list.insertItem(0, self._conversation_item(conversations[0]))
            else:
                self.list.setUpdatesEnabled(False)
                self.list.clear()
                for c in conversations:
                    self.list.addItem(self._conversation_item(c))
                self.list.setUpdatesEnabled(True)
            self._shown = wanted
            self._showing_hits = False
        for row, (cid, _title) in enumerate(self._shown):
            if cid == current:
                self.list.setCurrentRow(row)
                break
        else:
            self.list.clearSelection()

    def show_hits(self, hits: list[Any]) -> None:
        """Search results: one row per hit, title over the matching snippet."""
        self._showing_hits = True
        self._shown = []
        self.list.clear()
        if not hits:
            item = QListWidgetItem("No matches")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(item)
        for h in hits:
            title = h.conversation_title or "New chat"
            text = title if h.field == "title" else f"{title}\n  {h.snippet}"
            item = QListWidgetItem(text)
            item.setData(ID_ROLE, h.conversation_id)
            item.setData(MESSAGE_ROLE, h.message_id)
            item.setToolTip(h.snippet)
            self.list.addItem(item)

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _on_activated(self, item: QListWidgetItem) -> None:
        cid, mid = item.data(ID_ROLE), item.data(MESSAGE_ROLE)
        if cid is not None and mid is not None:
            self.hit_requested.emit(int(cid), int(mid))
        elif cid is not None:
            self.open_requested.emit(int(cid))

    def _on_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or item.data(ID_ROLE) is None:
            return
        cid = int(item.data(ID_ROLE))
        menu = QMenu(self)
        menu.addAction("Rename…  (F2)", lambda: self.ask_rename(cid, item.text().split("\n")[0]))
        menu.addAction("Delete…  (Del)", lambda: self.ask_delete(cid, item.text().split("\n")[0]))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def ask_rename(self, cid: int, title: str) -> None:
        new, ok = QInputDialog.getText(self, "Rename chat", "Title:", QLineEdit.EchoMode.Normal, title)
        if ok and new.strip():
            self.rename_requested.emit(cid, new.strip())

    def ask_delete(self, cid: int, title: str) -> None:
        answer = QMessageBox.question(self, "Delete chat",
                                      f"Delete “{title}” and all its messages? This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_requested.emit(cid)

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(ID_ROLE)) if item is not None and item.data(ID_ROLE) is not None else None
