"""The conversation history: one SQLite file (WAL) holding conversations as trees of messages.

Every edit or regenerate adds a sibling (same parent); nothing is overwritten or truncated. A
conversation remembers its active leaf: the message the window shows last. Use one HistoryStore
per database file and process; it is safe to call from several threads (one lock, one connection).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.history import export as _export
from app.history.errors import HistoryError, NotFound
from app.history.migrations import check_version, migrate
from app.history.models import (
    INTERRUPTED,
    INTERRUPTED_NOTE,
    ROLES,
    STATUSES,
    ChatSettings,
    Conversation,
    SearchHit,
    StoredMessage,
    tool_calls_json,
    tool_calls_of,
    tool_rounds_of,
)
from app.history.paths import default_db_path
from app.history.search import fts_query, parse_snippet, SNIPPET_END, SNIPPET_START
from app.history.titles import make_title

__all__ = ["HistoryStore", "default_db_path"]

log = logging.getLogger(__name__)

_MESSAGE_COLUMNS = (
    "id, conversation_id, parent_id, role, channel, content, reasoning, status, error, usage_json, created_at, "
    "tool_calls_json, finish_reason, model, remote_host, browser_pages_json"
)
_CONVERSATION_COLUMNS = "id, title, created_at, updated_at, active_leaf_id, settings_json"


def _usage_json(usage: Any) -> str | None:
    if usage is None:
        return None
    if dataclasses.is_dataclass(usage) and not isinstance(usage, type):
        usage = dataclasses.asdict(usage)
    if not isinstance(usage, Mapping):
        raise TypeError(f"usage must be a mapping or a dataclass, not {type(usage).__name__}")
    return json.dumps(dict(usage), sort_keys=True)


def _json_or_none(data: Any) -> str | None:
    return None if data is None else json.dumps(data, sort_keys=True)


def _browser_pages_json(pages: Any) -> str | None:
    """The stored form of a reply's browser pages (a list of dicts; None when there are none)."""
    return json.dumps(list(pages), sort_keys=True) if pages else None


def _message(row: sqlite3.Row) -> StoredMessage:
    usage, calls, pages = row["usage_json"], row["tool_calls_json"], row["browser_pages_json"]
    calls = json.loads(calls) if calls else None
    pages = json.loads(pages) if pages else None
    return StoredMessage(
        id=row["id"], conversation_id=row["conversation_id"], parent_id=row["parent_id"], role=row["role"],
        channel=row["channel"], content=row["content"], reasoning=row["reasoning"], status=row["status"],
        error=row["error"], usage=None if usage is None else json.loads(usage), created_at=row["created_at"],
        tool_calls=tuple(tool_calls_of(calls)), finish_reason=row["finish_reason"],
        model=row["model"], remote_host=row["remote_host"],
        tool_rounds=tuple(tool_rounds_of(calls)),
        browser_pages=tuple(p for p in pages if isinstance(p, dict)) if isinstance(pages, list) else (),
    )


def _conversation(row: sqlite3.Row) -> Conversation:
    settings = row["settings_json"]
    return Conversation(
        id=row["id"], title=row["title"], created_at=row["created_at"], updated_at=row["updated_at"],
        active_leaf_id=row["active_leaf_id"],
        settings=ChatSettings.from_json(json.loads(settings)) if settings else ChatSettings(),
    )


class HistoryStore:
    """Open (creating, upgrading and backing up as needed) the history database at ``db_path``.

    ``clock`` gives message and conversation times (unix seconds); tests inject one.
    After opening, ``backup_path`` is the pre-migration copy written (or None) and
    ``recovered_ids`` lists replies found "streaming" (the app died mid-reply): they are now
    "stopped" with ``error == INTERRUPTED_NOTE``.
    """

    def __init__(self, db_path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(db_path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise HistoryError(f"Cannot open the conversation history at {self.path}: {e}") from e
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            check_version(conn)  # refuse a newer file before switching it to WAL (a write)
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise HistoryError(f"Could not switch {self.path} to WAL mode.")
            # NORMAL in WAL mode: a killed process loses nothing committed; only power loss may
            # lose the last commits. secure_delete zeroes deleted text in the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise HistoryError(
                f"The conversation history at {self.path} cannot be read ({e}). "
                "It may be damaged or not a Lantern history file; it was left as it is."
            ) from e
        except BaseException:
            conn.close()
            raise
        try:
            self.backup_path: Path | None = migrate(conn, self.path)
        except sqlite3.Error as e:
            conn.close()
            raise HistoryError(
                f"Upgrading the conversation history at {self.path} failed ({e}); "
                "it keeps its previous version, and a backup copy was written next to it first."
            ) from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._closed = False
        self.recovered_ids: tuple[int, ...] = self._recover_interrupted()

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint (the WAL file is left empty) and close. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._closed = True

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _recover_interrupted(self) -> tuple[int, ...]:
        with self._tx() as db:
            ids = tuple(r[0] for r in db.execute("SELECT id FROM messages WHERE status = 'streaming'"))
            db.execute(
                "UPDATE messages SET status = 'stopped', error = COALESCE(error, ?), finish_reason = ?"
                " WHERE status = 'streaming'",
                (INTERRUPTED_NOTE, INTERRUPTED),
            )
        if ids:
            log.warning("history: %d reply(ies) were cut off by a crash and are marked stopped", len(ids))
        return ids

    def _conversation_row(self, db: sqlite3.Connection, conversation_id: int) -> sqlite3.Row:
        row = db.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"No conversation with id {conversation_id}.")
        return row

    def _message_row(self, db: sqlite3.Connection, message_id: int) -> sqlite3.Row:
        row = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise NotFound(f"No message with id {message_id}.")
        return row

    def _in_conversation(self, db: sqlite3.Connection, conversation_id: int, message_id: int) -> sqlite3.Row:
        row = self._message_row(db, message_id)
        if row["conversation_id"] != conversation_id:
            raise NotFound(f"Message {message_id} is not in conversation {conversation_id}.")
        return row

    # -- conversations --------------------------------------------------------------------------

    def create_conversation(self, title: str | None = None) -> Conversation:
        now = self._clock()
        title = (title or "").strip() or None
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)", (title, now, now)
            )
            return _conversation(self._conversation_row(db, cur.lastrowid))

    def list_conversations(self) -> list[Conversation]:
        """Newest activity first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [_conversation(r) for r in rows]

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._lock:
            return _conversation(self._conversation_row(self._conn, conversation_id))

    def set_chat_settings(self, conversation_id: int, settings: ChatSettings) -> Conversation:
        """This conversation's own reasoning effort / instructions (None fields: the defaults)."""
        with self._tx() as db:
            self._conversation_row(db, conversation_id)
            db.execute("UPDATE conversations SET settings_json = ? WHERE id = ?",
                       (_json_or_none(settings.to_json()), conversation_id))
            return _conversation(self._conversation_row(db, conversation_id))

    def rename_conversation(self, conversation_id: int, title: str | None) -> Conversation:
        """A blank title clears it (None)."""
        title = (title or "").strip() or None
        with self._tx() as db:
            self._conversation_row(db, conversation_id)
            db.execute(
                "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?", (title, self._clock(), conversation_id)
            )
            return _conversation(self._conversation_row(db, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete for real: rows, index entries, and the bytes in the file and its WAL.

        secure_delete zeroes freed space; 'optimize' rewrites the full-text indexes without the
        deleted entries (FTS5 otherwise keeps them in old segments until a merge); the
        TRUNCATE checkpoint copies the WAL into the database and empties the WAL file.
        """
        with self._tx() as db:
            self._conversation_row(db, conversation_id)
            db.execute("UPDATE conversations SET active_leaf_id = NULL WHERE id = ?", (conversation_id,))
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
            db.execute("INSERT INTO titles_fts(titles_fts) VALUES ('optimize')")
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate the WAL to zero bytes."""
        with self._lock:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("history: WAL checkpoint blocked by another connection; deleted text may stay in the WAL")

    # -- messages -------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        parent_id: int | None,
        role: str,
        content: str,
        channel: str | None = None,
        status: str = "done",
        usage: Any = None,
        *,
        reasoning: str = "",
        error: str | None = None,
        tool_calls: Any = (),
        finish_reason: str | None = None,
        model: str | None = None,
        remote_host: str | None = None,
        browser_pages: Any = (),
    ) -> StoredMessage:
        """Append a message under ``parent_id`` (None: a first message) and make it the active leaf.

        ``model``/``remote_host``: for a reply, the model that writes it and the server it runs on.

        An edit or a regenerate is simply another child of the same parent (a sibling).
        The first user message of an untitled conversation also sets its title.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        usage_json = _usage_json(usage)
        now = self._clock()
        with self._tx() as db:
            conv = self._conversation_row(db, conversation_id)
            if parent_id is not None:
                self._in_conversation(db, conversation_id, parent_id)
            cur = db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, channel, content, reasoning, status, error,"
                " usage_json, created_at, tool_calls_json, finish_reason, model, remote_host, browser_pages_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent_id, role, channel, content, reasoning, status, error, usage_json, now,
                 _json_or_none(tool_calls_json(tool_calls)), finish_reason, model, remote_host,
                 _browser_pages_json(browser_pages)),
            )
            db.execute(
                "UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                (cur.lastrowid, now, conversation_id),
            )
            if conv["title"] is None and role == "user" and (title := make_title(content)) is not None:
                db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            return _message(self._message_row(db, cur.lastrowid))

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        reasoning: str | None = None,
        status: str | None = None,
        usage: Any = None,
        error: str | None = None,
        tool_calls: Any = None,
        finish_reason: str | None = None,
        browser_pages: Any = None,
    ) -> StoredMessage:
        """Change the given fields (None leaves a field as it is). Used while a reply streams.
        `tool_calls`: (recipient, arguments) pairs or ToolRounds (with their results)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if reasoning is not None:
            changes["reasoning"] = reasoning
        if status is not None:
            changes["status"] = status
        if usage is not None:
            changes["usage_json"] = _usage_json(usage)
        if error is not None:
            changes["error"] = error
        if tool_calls is not None:
            changes["tool_calls_json"] = _json_or_none(tool_calls_json(tool_calls))
        if finish_reason is not None:
            changes["finish_reason"] = finish_reason
        if browser_pages is not None:
            changes["browser_pages_json"] = _browser_pages_json(browser_pages)
        with self._tx() as db:
            row = self._message_row(db, message_id)
            if changes:
                sets = ", ".join(f"{k} = ?" for k in changes)
                db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), message_id))
                db.execute(
                    "UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), row["conversation_id"])
                )
            return _message(self._message_row(db, message_id))

    def get_message(self, message_id: int) -> StoredMessage:
        with self._lock:
            return _message(self._message_row(self._conn, message_id))

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every message of the conversation, all branches, in the order written (parents first)."""
        with self._lock:
            self._conversation_row(self._conn, conversation_id)
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [_message(r) for r in rows]

    # -- the tree -------------------------------------------------------------------------------

    def thread(self, conversation_id: int, leaf_id: int | None = None) -> list[StoredMessage]:
        """Messages from the root down to ``leaf_id`` (default: the active leaf), in order.

        Exactly root..leaf_id: it does not continue below ``leaf_id`` (see ``deepest_leaf``).
        """
        with self._lock:
            conv = self._conversation_row(self._conn, conversation_id)
            leaf = conv["active_leaf_id"] if leaf_id is None else leaf_id
            if leaf is None:
                return []
            self._in_conversation(self._conn, conversation_id, leaf)
            rows = self._conn.execute(
                f"""WITH RECURSIVE up(id, depth) AS (
                        SELECT ?, 0
                        UNION ALL
                        SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id
                        WHERE m.parent_id IS NOT NULL)
                    SELECT {", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))}
                    FROM up JOIN messages m ON m.id = up.id ORDER BY up.depth DESC""",
                (leaf,),
            ).fetchall()
        return [_message(r) for r in rows]

    def siblings(self, message_id: int) -> list[StoredMessage]:
        """All versions at this place in the tree (same parent), oldest first, this one included."""
        with self._lock:
            row = self._message_row(self._conn, message_id)
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (row["conversation_id"], row["parent_id"]),
            ).fetchall()
        return [_message(r) for r in rows]

    def children(self, message_id: int) -> list[StoredMessage]:
        with self._lock:
            self._message_row(self._conn, message_id)
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE parent_id = ? ORDER BY id", (message_id,)
            ).fetchall()
        return [_message(r) for r in rows]

    def deepest_leaf(self, message_id: int) -> StoredMessage:
        """Follow the newest child from ``message_id`` down to a leaf (``message_id`` itself if it has none)."""
        with self._lock:
            current = self._message_row(self._conn, message_id)
            while (child := self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE parent_id = ? ORDER BY id DESC LIMIT 1",
                (current["id"],),
            ).fetchone()) is not None:
                current = child
        return _message(current)

    def set_active_leaf(self, conversation_id: int, message_id: int) -> None:
        """Show root..message_id. Does not change the conversation's place in the list."""
        with self._tx() as db:
            self._conversation_row(db, conversation_id)
            self._in_conversation(db, conversation_id, message_id)
            db.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (message_id, conversation_id))

    def select_branch(self, message_id: int) -> StoredMessage:
        """Switch to the branch through ``message_id`` (e.g. a sibling picked with ‹ ›): the active
        leaf becomes ``deepest_leaf(message_id)``, which is returned."""
        leaf = self.deepest_leaf(message_id)
        self.set_active_leaf(leaf.conversation_id, leaf.id)
        return leaf

    def fork(self, conversation_id: int, leaf_id: int | None = None) -> Conversation:
        """A new conversation holding a copy of root..leaf_id (default: the active leaf), times kept."""
        with self._lock:
            return self._fork(conversation_id, leaf_id)

    def _fork(self, conversation_id: int, leaf_id: int | None) -> Conversation:
        path = self.thread(conversation_id, leaf_id)
        source = self.get_conversation(conversation_id)
        base = source.title or next((make_title(m.content) for m in path if m.role == "user"), None)
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, settings_json) VALUES (?, ?, ?, ?)",
                (None if base is None else f"{base} (fork)", now, now, _json_or_none(source.settings.to_json())),
            )
            new_id = cur.lastrowid
            parent: int | None = None
            for m in path:
                parent = self._insert_copy(db, new_id, parent, m)
            db.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (parent, new_id))
            return _conversation(self._conversation_row(db, new_id))

    @staticmethod
    def _insert_copy(db: sqlite3.Connection, conversation_id: int, parent_id: int | None, m: Any) -> int:
        status = "stopped" if m.status == "streaming" else m.status
        reason = m.finish_reason
        if m.status == "streaming":
            reason = INTERRUPTED
        cur = db.execute(
            "INSERT INTO messages (conversation_id, parent_id, role, channel, content, reasoning, status, error,"
            " usage_json, created_at, tool_calls_json, finish_reason, model, remote_host, browser_pages_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, parent_id, m.role, m.channel, m.content, m.reasoning, status, m.error,
             _usage_json(m.usage), m.created_at, _json_or_none(tool_calls_json(m.tool_rounds or m.tool_calls)), reason,
             getattr(m, "model", None), getattr(m, "remote_host", None), _browser_pages_json(m.browser_pages)),
        )
        return int(cur.lastrowid)

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 100) -> list[SearchHit]:
        """Full-text search over titles and messages (all branches), newest first.

        Each word of ``query`` must appear (as a word prefix; accents and case ignored).
        """
        match = fts_query(query)
        if match is None:
            return []
        snip = f"'{SNIPPET_START}', '{SNIPPET_END}', '…', 16"
        with self._lock:
            # The newest `limit` matches first (ids only), then snippets for those alone: a common word
            # matches thousands of messages, and a snippet costs far more than an id.
            message_rows = self._conn.execute(
                f"""SELECT m.id, m.conversation_id, m.role, m.created_at, c.title,
                        snippet(messages_fts, 0, {snip}) AS s0, snippet(messages_fts, 1, {snip}) AS s1
                    FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
                    JOIN conversations c ON c.id = m.conversation_id
                    WHERE messages_fts MATCH ? AND messages_fts.rowid IN (
                        SELECT m2.id FROM messages_fts AS f2 JOIN messages m2 ON m2.id = f2.rowid
                        WHERE f2.messages_fts MATCH ? ORDER BY m2.created_at DESC, m2.id DESC LIMIT ?)
                    ORDER BY m.created_at DESC, m.id DESC""",
                (match, match, limit),
            ).fetchall()
            title_rows = self._conn.execute(
                f"""SELECT c.id, c.title, c.updated_at, snippet(titles_fts, 0, {snip}) AS s
                    FROM titles_fts JOIN conversations c ON c.id = titles_fts.rowid
                    WHERE titles_fts MATCH ? ORDER BY c.updated_at DESC, c.id DESC LIMIT ?""",
                (match, limit),
            ).fetchall()
        hits: list[SearchHit] = []
        for r in message_rows:
            in_content = SNIPPET_START in r["s0"]
            text, spans = parse_snippet(r["s0"] if in_content else r["s1"])
            hits.append(SearchHit(
                conversation_id=r["conversation_id"], conversation_title=r["title"], message_id=r["id"],
                field="content" if in_content else "reasoning", role=r["role"], snippet=text,
                highlights=spans, created_at=r["created_at"],
            ))
        for r in title_rows:
            text, spans = parse_snippet(r["s"])
            hits.append(SearchHit(
                conversation_id=r["id"], conversation_title=r["title"], message_id=None, field="title", role=None,
                snippet=text, highlights=spans, created_at=r["updated_at"],
            ))
        hits.sort(key=lambda h: (h.created_at, h.message_id is None), reverse=True)
        return hits[:limit]

    # -- export / import ------------------------------------------------------------------------

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The whole tree (every branch) and the active leaf; see app.history.export for the format."""
        with self._lock:
            conv = self.get_conversation(conversation_id)
            return _export.to_json(conv, self.messages(conversation_id))

    def export_markdown(self, conversation_id: int) -> str:
        """The active branch as Markdown."""
        with self._lock:
            conv = self.get_conversation(conversation_id)
            thread = self.thread(conversation_id)
            total = len(self.messages(conversation_id))
        return _export.to_markdown(conv, thread, total)

    def import_json(self, data: Any) -> Conversation:
        """Add an exported conversation as a new one (new ids; times, tree and active leaf kept)."""
        parsed = _export.parse_json(data)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, settings_json) VALUES (?, ?, ?, ?)",
                (parsed.title, parsed.created_at, parsed.updated_at, _json_or_none(parsed.settings.to_json())),
            )
            new_id = int(cur.lastrowid)
            ids: dict[int, int] = {}
            for m in parsed.messages:
                parent = None if m.parent is None else ids[m.parent]
                ids[m.local_id] = self._insert_copy(db, new_id, parent, m)
            leaf = None if parsed.active_leaf is None else ids[parsed.active_leaf]
            db.execute("UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, new_id))
            return _conversation(self._conversation_row(db, new_id))
