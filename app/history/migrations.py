"""Numbered schema migrations for the history database, with a backup before any upgrade.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[n - 1]`` takes a database from
version n - 1 to version n; each runs in one transaction together with the version bump, so a
failed upgrade leaves the previous version in place. Never edit a released migration: append one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from app.history.errors import SchemaTooNew

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]


def _v1_initial(conn: sqlite3.Connection) -> None:
    """Conversations and a tree of messages (parent_id), stored as text, never token ids."""
    conn.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            active_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            channel TEXT,
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'done',
            usage_json TEXT,
            created_at REAL NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX messages_by_conversation ON messages(conversation_id, id)")
    conn.execute("CREATE INDEX messages_by_parent ON messages(parent_id)")


_V2_TRIGGERS = (
    """CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
    END""",
    """CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
    END""",
    """CREATE TRIGGER messages_au AFTER UPDATE OF content, reasoning ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
        INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
    END""",
    """CREATE TRIGGER titles_ai AFTER INSERT ON conversations WHEN new.title IS NOT NULL BEGIN
        INSERT INTO titles_fts(rowid, title) VALUES (new.id, new.title);
    END""",
    """CREATE TRIGGER titles_ad AFTER DELETE ON conversations WHEN old.title IS NOT NULL BEGIN
        INSERT INTO titles_fts(titles_fts, rowid, title) VALUES ('delete', old.id, old.title);
    END""",
    # One trigger (not two) so the delete of the old title runs before the insert of the new one:
    # SQLite does not promise an order between triggers, and the reverse order corrupts FTS5.
    """CREATE TRIGGER titles_au AFTER UPDATE OF title ON conversations BEGIN
        INSERT INTO titles_fts(titles_fts, rowid, title) SELECT 'delete', old.id, old.title WHERE old.title IS NOT NULL;
        INSERT INTO titles_fts(rowid, title) SELECT new.id, new.title WHERE new.title IS NOT NULL;
    END""",
)


def _v2_reasoning_errors_search(conn: sqlite3.Connection) -> None:
    """Reasoning and error text per reply; FTS5 indexes over titles and messages (filled from existing rows)."""
    conn.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE messages ADD COLUMN error TEXT")
    tokenizer = "unicode61 remove_diacritics 2"
    conn.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        f"content, reasoning, content='messages', content_rowid='id', tokenize='{tokenizer}')"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE titles_fts USING fts5("
        f"title, content='conversations', content_rowid='id', tokenize='{tokenizer}')"
    )
    # External-content indexes kept in step by triggers (the pattern from the FTS5 docs).
    # One execute() per statement: executescript() would COMMIT the migration's transaction.
    for trigger in _V2_TRIGGERS:
        conn.execute(trigger)
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    conn.execute("INSERT INTO titles_fts(titles_fts) VALUES ('rebuild')")


INTERRUPTED_NOTE_V2 = "Interrupted: Lantern closed before this reply finished."
"""The error text v2 set on a reply cut off by a crash (app.history.models.INTERRUPTED_NOTE)."""


def _v3_tool_calls_finish_reason_chat_settings(conn: sqlite3.Connection) -> None:
    """A reply's tool calls and why it ended become columns (they rode inside usage_json before);
    a conversation gets its own settings (reasoning effort, instructions), NULL for the defaults.

    finish_reason: the engine's reason ("stop", "length", "tool_call", "cancelled", "error"), or
    "interrupted" for a reply cut off because Lantern closed (a crash, a kill) while writing it.
    """
    conn.execute("ALTER TABLE messages ADD COLUMN tool_calls_json TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN finish_reason TEXT")
    conn.execute("ALTER TABLE conversations ADD COLUMN settings_json TEXT")
    rows = conn.execute("SELECT id, role, status, error, usage_json FROM messages WHERE role = 'assistant'").fetchall()
    for row_id, _role, status, error, usage_json in rows:
        try:
            usage = json.loads(usage_json) if usage_json else None
        except ValueError:
            usage = None
        usage = usage if isinstance(usage, dict) else None
        calls = usage.pop("tool_calls", None) if usage is not None else None
        reason = usage.pop("finish_reason", None) if usage is not None else None
        if status == "stopped":
            reason = "interrupted" if error == INTERRUPTED_NOTE_V2 else "cancelled"
        elif status == "error":
            reason = "error"
        elif status == "done" and reason not in ("length", "tool_call"):
            reason = "stop"
        elif status == "streaming":
            reason = None
        conn.execute(
            "UPDATE messages SET tool_calls_json = ?, finish_reason = ?, usage_json = ? WHERE id = ?",
            (json.dumps(calls) if isinstance(calls, list) and calls else None, reason,
             None if usage is None else json.dumps(usage, sort_keys=True), row_id),
        )


def _v4_reply_origin(conn: sqlite3.Connection) -> None:
    """Which model wrote a reply, and the server it ran on ("gpu-box:8000"; NULL: this computer).
    Replies written before keep NULLs (not recorded). Self-contained: adds these two columns only."""
    conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN remote_host TEXT")


def _v5_attachments_chat_tools_browser_pages(conn: sqlite3.Connection) -> None:
    """Files and folders attached to a chat, each chat's tool switches (app/tools_controller.py), and
    the browser pages a reply's tools showed (`messages.browser_pages_json`: what its citations point at).

    An attachment is either inline (its text goes into the user message it was sent with,
    `message_id`) or indexed for the browser tool (`doc_ids`: its documents in the chat's index).
    `mode` "stored": Lantern keeps a copy (`stored_path`); "referenced": only `source_path`.
    Both tables go with their chat (ON DELETE CASCADE). The switches are permissions, not preferences:
    unlike `conversations.settings_json` they are neither exported nor copied by Fork.
    """
    conn.execute("ALTER TABLE messages ADD COLUMN browser_pages_json TEXT")
    conn.execute(
        """CREATE TABLE attachments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            mode TEXT NOT NULL,
            source_path TEXT NOT NULL,
            stored_path TEXT,
            inline_text TEXT,
            doc_ids TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            note TEXT,
            created_at REAL NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX attachments_by_conversation ON attachments(conversation_id, id)")
    conn.execute(
        """CREATE TABLE chat_tools (
            conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
            python_enabled INTEGER NOT NULL DEFAULT 0,
            python_always INTEGER NOT NULL DEFAULT 0
        )"""
    )


MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_reasoning_errors_search, _v3_tool_calls_finish_reason_chat_settings,
                                     _v4_reply_origin, _v5_attachments_chat_tools_browser_pages)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: sqlite3.Connection) -> int:
    """The database's schema version; SchemaTooNew (before anything is written) if newer than ours."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"The history database has schema version {version}, newer than this Lantern "
            f"understands ({SCHEMA_VERSION}). Update Lantern; the file was not changed."
        )
    return version


def backup_path(db_path: Path, old_version: int, when: float) -> Path:
    """``<name>.v<old>-<UTC timestamp>.bak`` next to the database, e.g. ``history.v1-20261126T013000Z.bak``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    candidate = db_path.with_name(f"{db_path.name}.v{old_version}-{stamp}.bak")
    n = 1
    while candidate.exists():  # two upgrades within one second: keep both copies
        n += 1
        candidate = db_path.with_name(f"{db_path.name}.v{old_version}-{stamp}-{n}.bak")
    return candidate


def backup(conn: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of the open database via SQLite's online backup API."""
    target = sqlite3.connect(dest)
    try:
        conn.backup(target)
    finally:
        target.close()


def migrate(conn: sqlite3.Connection, db_path: Path | None, *, now: float | None = None) -> Path | None:
    """Bring ``conn`` to SCHEMA_VERSION. Returns the backup written first, or None if none was needed.

    ``conn`` must be in autocommit mode (isolation_level=None). A brand-new (version 0) database
    is not backed up: there is nothing in it to lose. ``db_path`` None (in-memory) skips backups.
    """
    version = check_version(conn)
    if version == SCHEMA_VERSION:
        return None
    saved: Path | None = None
    if version > 0 and db_path is not None:
        saved = backup_path(db_path, version, time.time() if now is None else now)
        backup(conn, saved)
        log.info("history: backed up schema v%d to %s before upgrading", version, saved)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("history: migrated schema to v%d", target)
    return saved
