"""The window's tools: a chat's attachments, its Python switch, and what a reply may use.

* Attach (drop or pick, files or folders): the text is extracted on a background thread. A small
  file picked alone goes into the next message as text, with its name, while the files waiting for
  that message stay within INLINE_CHARS characters together;
  anything larger, and folders, is indexed for the browser tool. "Keep a copy" stores the files in
  the chat's folder; otherwise only their path is kept (the extracted text is in the index either way).
* Python is off until the user turns on "Let the model run Python on this computer" for the chat;
  each run then asks, unless "Allow for this chat" was chosen.
* `prepare(...)` gives the StartChat its tools (engine.tools.chat_tools.ChatToolsRequest) and the
  parameters that declare them; `inline_texts(chat)` the texts sent with each user message.
* Deleting a chat deletes its folder (index, copies, Python's files); the rows go with the chat.

Qt only for signals; the GUI thread never extracts or indexes.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app import paths
from app.history import attachments as rows
from app.history.attachments import Attachment, ChatToolSwitches
from engine.tools.chat_tools import ChatToolsRequest
from engine.tools.extract import ExtractionError, extract_document, iter_folder
from engine.tools.index import DocumentIndex
from engine.tools.python_sandbox.isolation import Isolation, detect_isolation
from engine.types import GenerationParams

log = logging.getLogger(__name__)

INLINE_CHARS = 12_000          # about 3,000 tokens: a file this small goes into the message itself
TOOLS_DIR = "tools"


def inline_block(name: str, text: str) -> str:
    return f"--- Attached file `{name}` ---\n{text.rstrip()}\n--- End of `{name}` ---"


class ToolsController(QObject):
    attachments_changed = Signal(int)          # conversation id
    attach_failed = Signal(str)                # a message for the user
    busy_changed = Signal(bool)                # extraction running
    switches_changed = Signal(int)

    def __init__(self, store: Any, data_dir: Path | None = None) -> None:
        super().__init__()
        self.store = store
        self.data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
        self._isolation: Isolation | None = None
        self._jobs = 0
        self._jobs_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- where things are ---------------------------------------------------------------------------

    def folder(self, conversation_id: int) -> Path:
        return self.data_dir / TOOLS_DIR / f"chat-{conversation_id}"

    @property
    def isolation(self) -> Isolation:
        if self._isolation is None:
            self._isolation = detect_isolation()
        return self._isolation

    def attachments(self, conversation_id: int | None) -> list[Attachment]:
        return [] if conversation_id is None else rows.attachments(self.store, conversation_id)

    # -- switches -----------------------------------------------------------------------------------

    def switches(self, conversation_id: int | None) -> ChatToolSwitches:
        return rows.switches(self.store, conversation_id)

    def set_python(self, conversation_id: int, enabled: bool, always: bool | None = None) -> None:
        current = self.switches(conversation_id)
        value = ChatToolSwitches(bool(enabled), current.python_always if always is None else bool(always))
        if not value.python_enabled:
            value = ChatToolSwitches(False, False)
        rows.set_switches(self.store, conversation_id, value)
        self.switches_changed.emit(conversation_id)

    # -- attaching ----------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._jobs > 0

    def attach(self, conversation_id: int, sources: Sequence[Path | str], *, keep_copy: bool,
               wait: bool = False) -> None:
        """Add files/folders to the chat in the background; attachments_changed when each is in."""
        with self._jobs_lock:
            self._jobs += 1
        self.busy_changed.emit(True)
        thread = threading.Thread(target=self._attach_all, args=(conversation_id, [Path(s) for s in sources],
                                                                  keep_copy), name="attach", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        if wait:
            thread.join()

    def wait_idle(self, timeout: float = 30.0) -> None:
        for t in list(self._threads):
            t.join(timeout)

    def _attach_all(self, conversation_id: int, sources: list[Path], keep_copy: bool) -> None:
        try:
            for source in sources:
                try:
                    self._attach_one(conversation_id, source, keep_copy, single=len(sources) == 1)
                except ExtractionError as exc:
                    self.attach_failed.emit(str(exc))
                except Exception as exc:  # noqa: BLE001 - a bad file must not take the app down
                    log.exception("attaching %s failed", source)
                    self.attach_failed.emit(f"Could not attach {source.name}: {exc}")
                else:
                    self.attachments_changed.emit(conversation_id)
        finally:
            with self._jobs_lock:
                self._jobs -= 1
                idle = self._jobs == 0
            if idle:
                self.busy_changed.emit(False)

    def _attach_one(self, conversation_id: int, source: Path, keep_copy: bool, *, single: bool) -> None:
        source = source.expanduser().resolve()
        folder = self.folder(conversation_id)
        stored: Path | None = None
        if keep_copy:
            stored = folder / "files" / uuid.uuid4().hex[:12] / source.name
            stored.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, stored, symlinks=False,
                                ignore=shutil.ignore_patterns(".*", "node_modules", "__pycache__"))
            else:
                shutil.copy2(source, stored)
        read_from = stored or source
        if read_from.is_dir():
            files = list(iter_folder(read_from))
            if not files:
                raise ExtractionError(f"{source.name} holds no file Lantern can read.")
            doc_ids, failed, size = [], [], 0
            with DocumentIndex(folder / "index.sqlite3") as index:
                for path in files:
                    try:
                        doc = extract_document(path)
                    except ExtractionError as exc:
                        failed.append(str(exc))
                        continue
                    name = f"{source.name}/{path.relative_to(read_from)}"
                    doc_ids.append(index.add(doc, name=name, source=str(source / path.relative_to(read_from))).id)
                    size += len(doc.text)
            note = f"{len(failed)} file(s) could not be read" if failed else None
            rows.add_attachment(self.store, conversation_id, name=source.name, kind="folder",
                                mode="stored" if stored else "referenced", source_path=str(source),
                                stored_path=str(stored) if stored else None, doc_ids=tuple(doc_ids), size=size,
                                note=note)
            return
        doc = extract_document(read_from)
        if single and self._pending_inline_chars(conversation_id) + len(doc.text) <= INLINE_CHARS:
            rows.add_attachment(self.store, conversation_id, name=source.name, kind="file",
                                mode="stored" if stored else "referenced", source_path=str(source),
                                stored_path=str(stored) if stored else None, inline_text=doc.text,
                                size=len(doc.text), note=doc.note)
            return
        with DocumentIndex(folder / "index.sqlite3") as index:
            doc_id = index.add(doc, name=source.name, source=str(source)).id
        rows.add_attachment(self.store, conversation_id, name=source.name, kind="file",
                            mode="stored" if stored else "referenced", source_path=str(source),
                            stored_path=str(stored) if stored else None, doc_ids=(doc_id,), size=len(doc.text),
                            note=doc.note)

    def _pending_inline_chars(self, conversation_id: int) -> int:
        """Text of the small files already waiting to go with the next message (together at most
        INLINE_CHARS; what does not fit goes to the index)."""
        return sum(len(a.inline_text or "") for a in self.attachments(conversation_id)
                   if a.inline and a.message_id is None)

    def remove(self, attachment_id: int) -> None:
        attachment = rows.get_attachment(self.store, attachment_id)
        if attachment is None:
            return
        if attachment.doc_ids:
            with DocumentIndex(self.folder(attachment.conversation_id) / "index.sqlite3") as index:
                index.remove(attachment.doc_ids)
        if attachment.stored_path:
            stored = Path(attachment.stored_path)
            if stored.parent.parent.name == "files":      # files/<id>/<name>: the copy's own folder
                shutil.rmtree(stored.parent, ignore_errors=True)
        rows.remove_attachment(self.store, attachment_id)
        self.attachments_changed.emit(attachment.conversation_id)

    def delete_chat(self, conversation_id: int) -> None:
        """The chat is being deleted: its folder goes (index, stored copies, Python's files)."""
        shutil.rmtree(self.folder(conversation_id), ignore_errors=True)

    # -- a reply ------------------------------------------------------------------------------------

    def on_user_message(self, conversation_id: int, message_id: int) -> None:
        """Inline attachments waiting for a message go with this one."""
        rows.bind_pending_inline(self.store, conversation_id, message_id)

    def inline_texts(self, conversation_id: int) -> dict[int, list[tuple[str, str]]]:
        """(name, text) of the files sent inline with each user message of the chat, by message id."""
        out: dict[int, list[tuple[str, str]]] = {}
        for a in self.attachments(conversation_id):
            if a.inline and a.message_id is not None:
                out.setdefault(a.message_id, []).append((a.name, a.inline_text or ""))
        return out

    def prepare(self, conversation_id: int, params: GenerationParams) -> tuple[GenerationParams, ChatToolsRequest | None]:
        """The reply's parameters with the built-in tools it may use, and the tools request (None: no tools)."""
        attached = self.attachments(conversation_id)
        browser = any(a.doc_ids for a in attached)
        switches = self.switches(conversation_id)
        python = switches.python_enabled
        if not (browser or python):
            return params, None
        builtin = tuple(t for t, on in (("browser", browser), ("python", python)) if on)
        files = tuple((a.name, Path(a.path)) for a in attached if Path(a.path).exists())
        request = ChatToolsRequest(self.folder(conversation_id), browser=browser, python=python,
                                   python_files=files, python_always=switches.python_always)
        return dataclasses.replace(params, builtin_tools=builtin), request

    def document_text(self, conversation_id: int, doc_id: int) -> tuple[str, str, str] | None:
        """(title, source, text) of a document in the chat's index."""
        path = self.folder(conversation_id) / "index.sqlite3"
        if not path.exists():
            return None
        with DocumentIndex(path) as index:
            doc = index.get(doc_id)
        return None if doc is None else (doc.title, doc.source, doc.text)
