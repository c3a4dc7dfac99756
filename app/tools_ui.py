"""Wires the tools into the window: the attachments bar over the composer, drops on the chat, the Python
switch, approvals in tool blocks, and citations that open the cited document at its lines."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QApplication, QVBoxLayout

from app.history.models import BROWSER_PAGES_KEY
from app.widgets.attachments import AttachmentsBar
from app.widgets.document_viewer import DocumentViewer
from engine.tools.browser import resolve_citation

log = logging.getLogger(__name__)


class ToolsUi:
    def __init__(self, window: Any, controller: Any, tools: Any) -> None:
        self.window, self.controller, self.tools = window, controller, tools
        self.viewer: DocumentViewer | None = None
        self.bar = AttachmentsBar()
        layout = window.chat.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(window.chat.composer), self.bar)
        self.bar.set_isolation(tools.isolation.describe())
        self.bar.install_drop_target(window.chat)
        self.bar.files_chosen.connect(self.attach)
        self.bar.remove_requested.connect(tools.remove)
        self.bar.python_toggled.connect(lambda on: tools.set_python(controller.ensure_conversation(), on))
        self.bar.always_toggled.connect(lambda on: tools.set_python(controller.ensure_conversation(), True, on))
        tools.attachments_changed.connect(self._changed)
        tools.switches_changed.connect(self._changed)
        tools.attach_failed.connect(lambda message: window.on_error(message, "user"))
        tools.busy_changed.connect(self.bar.set_busy)
        controller.thread_changed.connect(self.refresh)
        controller.conversations_changed.connect(self.refresh)
        controller.tool_approval_needed.connect(lambda _turn: QApplication.alert(window))
        window.chat.tool_approval_answered.connect(controller.answer_tool_approval)
        window.chat.citation_clicked.connect(self.open_citation)
        self.refresh()

    def attach(self, paths: list[str]) -> None:
        cid = self.controller.ensure_conversation()
        self.tools.attach(cid, paths, keep_copy=self.bar.keep_copy.isChecked())

    def _changed(self, conversation_id: int) -> None:
        if conversation_id == self.controller.conversation_id:
            self.refresh()

    def refresh(self) -> None:
        cid = self.controller.conversation_id
        self.bar.set_attachments(self.tools.attachments(cid))
        switches = self.tools.switches(cid)
        self.bar.set_python(switches.python_enabled, switches.python_always)

    def open_citation(self, message_id: int, cursor: int, first: int, last: int) -> DocumentViewer | None:
        """Open the document a citation in reply `message_id` points to, at its lines."""
        cid = self.controller.conversation_id
        message = next((m for m in self.controller.thread if m.id == message_id), None)
        pages = (message.usage or {}).get(BROWSER_PAGES_KEY) if message is not None else None
        if cid is None or not pages:
            self.window.statusBar().showMessage("This citation points to no document of this chat.", 6000)
            return None
        texts: dict[int, Any] = {}

        def text_of(doc_id: int) -> str | None:
            texts[doc_id] = self.tools.document_text(cid, doc_id)
            return texts[doc_id][2] if texts[doc_id] else None

        target = resolve_citation(pages, cursor, first, last, text_of)
        if target is None or texts.get(target.doc_id) is None and text_of(target.doc_id) is None:
            self.window.statusBar().showMessage("The cited document is no longer attached to this chat.", 6000)
            return None
        title, source, text = texts[target.doc_id]
        if self.viewer is not None:
            self.viewer.close()
        self.viewer = DocumentViewer(title, source, text, target.first_line, target.last_line, self.window)
        self.viewer.show()
        return self.viewer
