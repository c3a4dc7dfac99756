"""The tools' part of the window: the attachments row over the message box, the tools' controls in the
composer's row (`Composer.add_control`), drops on the chat, and the document viewer a citation opens.

A view: it shows what the ToolsController and the ChatController hold and offers slots; every connection
between it and the controllers is made in app/wiring.py (`connect_tools`).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import QVBoxLayout

from app.widgets.attachments import AttachmentsBar
from app.widgets.document_viewer import DocumentViewer
from engine.tools.browser import resolve_citation

log = logging.getLogger(__name__)


class ToolsUi:
    def __init__(self, window: Any, controller: Any, tools: Any) -> None:
        self.window, self.controller, self.tools = window, controller, tools
        self.viewer: DocumentViewer | None = None
        self.bar = AttachmentsBar()
        chat = window.chat
        layout = chat.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(chat.composer), self.bar)
        chat.composer.add_control(self.bar.controls)
        self.bar.set_isolation(tools.isolation.describe())
        self.bar.install_drop_target(chat)
        self.refresh()

    def attach(self, paths: list[str]) -> None:
        cid = self.controller.ensure_conversation()
        self.tools.attach(cid, paths, keep_copy=self.bar.keep_copy.isChecked())

    def set_python(self, enabled: bool) -> None:
        self.tools.set_python(self.controller.ensure_conversation(), enabled)

    def set_python_always(self, always: bool) -> None:
        self.tools.set_python(self.controller.ensure_conversation(), True, always)

    def on_chat_changed(self, conversation_id: int) -> None:
        """A chat's attachments or switches changed: shown again if it is the shown chat."""
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
        pages = getattr(message, "browser_pages", ()) if message is not None else ()
        if cid is None or not pages:
            self.window.statusBar().showMessage("This citation points to no document of this chat.", 6000)
            return None
        texts: dict[int, Any] = {}

        def text_of(doc_id: int) -> str | None:
            texts[doc_id] = self.tools.document_text(cid, doc_id)
            return texts[doc_id][2] if texts[doc_id] else None

        target = resolve_citation(list(pages), cursor, first, last, text_of)
        if target is None or texts.get(target.doc_id) is None and text_of(target.doc_id) is None:
            self.window.statusBar().showMessage("The cited document is no longer attached to this chat.", 6000)
            return None
        title, source, text = texts[target.doc_id]
        if self.viewer is not None:
            self.viewer.close()
        self.viewer = DocumentViewer(title, source, text, target.first_line, target.last_line, self.window)
        self.viewer.show()
        return self.viewer
