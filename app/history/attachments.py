"""A chat's attachments and tool switches in the history database (tables of migration v5).

Functions over an open HistoryStore (its connection and lock); rows go with their chat when it is
deleted (ON DELETE CASCADE). No Qt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attachment:
    id: int
    conversation_id: int
    message_id: int | None       # the user message an inline attachment was sent with (None: not yet)
    name: str
    kind: str                    # "file" | "folder"
    mode: str                    # "stored" | "referenced"
    source_path: str
    stored_path: str | None
    inline_text: str | None      # set for an attachment that goes into the message as text
    doc_ids: tuple[int, ...]     # its documents in the chat's browser index
    size: int
    note: str | None             # e.g. files of a folder that could not be read
    created_at: float

    @property
    def inline(self) -> bool:
        return self.inline_text is not None

    @property
    def path(self) -> str:
        """Where its content is read from: the stored copy, else the user's own file."""
        return self.stored_path or self.source_path


@dataclass(frozen=True)
class ChatToolSwitches:
    python_enabled: bool = False
    python_always: bool = False   # "Allow for this chat": runs without asking each time


_COLUMNS = ("id, conversation_id, message_id, name, kind, mode, source_path, stored_path, inline_text, doc_ids, "
            "size, note, created_at")


def _row(r: Any) -> Attachment:
    return Attachment(r["id"], r["conversation_id"], r["message_id"], r["name"], r["kind"], r["mode"],
                      r["source_path"], r["stored_path"], r["inline_text"],
                      tuple(int(x) for x in (r["doc_ids"] or "").split(",") if x), r["size"], r["note"],
                      r["created_at"])


def add_attachment(store: Any, conversation_id: int, *, name: str, kind: str, mode: str, source_path: str,
                   stored_path: str | None = None, inline_text: str | None = None, doc_ids: tuple[int, ...] = (),
                   size: int = 0, note: str | None = None) -> Attachment:
    with store._tx() as db:
        store._conversation_row(db, conversation_id)
        cur = db.execute(
            f"INSERT INTO attachments ({_COLUMNS.split(', ', 1)[1]}) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, name, kind, mode, source_path, stored_path, inline_text,
             ",".join(map(str, doc_ids)), size, note, time.time()))
        return _row(db.execute(f"SELECT {_COLUMNS} FROM attachments WHERE id = ?", (cur.lastrowid,)).fetchone())


def attachments(store: Any, conversation_id: int) -> list[Attachment]:
    with store._lock:
        rows = store._conn.execute(f"SELECT {_COLUMNS} FROM attachments WHERE conversation_id = ? ORDER BY id",
                                   (conversation_id,)).fetchall()
    return [_row(r) for r in rows]


def get_attachment(store: Any, attachment_id: int) -> Attachment | None:
    with store._lock:
        row = store._conn.execute(f"SELECT {_COLUMNS} FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
    return None if row is None else _row(row)


def remove_attachment(store: Any, attachment_id: int) -> None:
    with store._tx() as db:
        db.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))


def bind_pending_inline(store: Any, conversation_id: int, message_id: int) -> list[Attachment]:
    """Give the inline attachments not yet sent to the user message `message_id`; returns them."""
    with store._tx() as db:
        db.execute("UPDATE attachments SET message_id = ? WHERE conversation_id = ? AND message_id IS NULL "
                   "AND inline_text IS NOT NULL", (message_id, conversation_id))
    return [a for a in attachments(store, conversation_id) if a.message_id == message_id]


def switches(store: Any, conversation_id: int | None) -> ChatToolSwitches:
    if conversation_id is None:
        return ChatToolSwitches()
    with store._lock:
        row = store._conn.execute("SELECT python_enabled, python_always FROM chat_tools WHERE conversation_id = ?",
                                  (conversation_id,)).fetchone()
    return ChatToolSwitches() if row is None else ChatToolSwitches(bool(row[0]), bool(row[1]))


def set_switches(store: Any, conversation_id: int, value: ChatToolSwitches) -> None:
    with store._tx() as db:
        db.execute("INSERT INTO chat_tools (conversation_id, python_enabled, python_always) VALUES (?, ?, ?) "
                   "ON CONFLICT(conversation_id) DO UPDATE SET python_enabled = excluded.python_enabled, "
                   "python_always = excluded.python_always",
                   (conversation_id, int(value.python_enabled), int(value.python_always)))
