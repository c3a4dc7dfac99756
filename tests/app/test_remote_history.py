"""History schema v4: which model and server wrote a reply (a migration after window's v3, kept by
fork/export/import)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.history import migrations
from app.history.store import HistoryStore


ORIGIN = migrations._v4_reply_origin
"""This branch's migration, found by function, not by number (another v4 may be renumbered around it)."""


def build(db: Path, version: int) -> sqlite3.Connection:
    """A database at `version`, made by the migrations before it (each in its own transaction)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for number, migration in enumerate(migrations.MIGRATIONS[:version], start=1):
        conn.execute("BEGIN")
        migration(conn)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    return conn


def test_the_reply_origin_migration_adds_its_two_columns_and_nothing_else(tmp_path: Path) -> None:
    before = migrations.MIGRATIONS.index(ORIGIN)             # 3 here: right after window's v3
    assert before >= 3
    conn = build(tmp_path / "h.db", before)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    assert "model" not in columns and {"tool_calls_json", "finish_reason"} <= columns
    ORIGIN(conn)
    added = {r[1] for r in conn.execute("PRAGMA table_info(messages)")} - columns
    assert added == {"model", "remote_host"}
    conn.close()


def test_a_history_of_the_version_before_is_upgraded_and_old_replies_have_no_origin(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    before = migrations.MIGRATIONS.index(ORIGIN)
    conn = build(db, before)
    conn.execute("INSERT INTO conversations (title, created_at, updated_at, settings_json) "
                 "VALUES ('old', 1, 1, '{\"reasoning_effort\": \"high\"}')")
    conn.execute("INSERT INTO messages (conversation_id, role, content, created_at, tool_calls_json, finish_reason)"
                 " VALUES (1, 'assistant', 'hi', 1, NULL, 'length')")
    conn.close()
    with HistoryStore(db) as store:
        assert store.backup_path is not None and store.backup_path.name.startswith(f"history.sqlite3.v{before}-")
        old = store.get_message(1)
        assert (old.content, old.finish_reason, old.model, old.remote_host) == ("hi", "length", None, None)
        assert store.get_conversation(1).settings.reasoning_effort == "high"
        new = store.add_message(1, 1, "assistant", "from afar", model="openai/gpt-oss-120b", remote_host="gpu-box:8000",
                                finish_reason="stop")
        assert (new.model, new.remote_host, new.finish_reason) == ("openai/gpt-oss-120b", "gpu-box:8000", "stop")
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION > before
    raw.close()


def test_the_oldest_history_is_upgraded_through_every_version(tmp_path: Path) -> None:
    from tests.app.test_history_migrations import write_v1

    db = tmp_path / "history.sqlite3"
    write_v1(db)
    with HistoryStore(db) as store:
        assert store.backup_path is not None and store.backup_path.name.startswith("history.sqlite3.v1-")
        reply = store.get_message(2)
        assert (reply.content, reply.finish_reason, reply.model, reply.remote_host) == \
            ("Keine Uhr hier, leider.", "stop", None, None)
        assert store.get_message(3).finish_reason == "cancelled"
        added = store.add_message(1, 1, "assistant", "now", model="gpt-oss-20b", remote_host="lab:8000")
        assert (store.get_message(added.id).model, store.get_message(added.id).remote_host) == ("gpt-oss-20b", "lab:8000")
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
    raw.close()


def test_origin_survives_fork_and_export_import(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        conv = store.create_conversation("remote")
        user = store.add_message(conv.id, None, "user", "hello")
        reply = store.add_message(conv.id, user.id, "assistant", "hi", model="gpt-oss-120b", remote_host="gpu-box")
        local = store.add_message(conv.id, user.id, "assistant", "hi too", model="gpt-oss-20b")
        forked = store.fork(conv.id, reply.id)
        assert [(m.model, m.remote_host) for m in store.thread(forked.id)] == [(None, None), ("gpt-oss-120b", "gpu-box")]
        data = store.export_json(conv.id)
        assert data["messages"][1]["remote_host"] == "gpu-box" and "remote_host" not in data["messages"][2]
        imported = store.import_json(data)
        assert store.export_json(imported.id) == data
        got = {m.content: (m.model, m.remote_host) for m in store.messages(imported.id)}
        assert got["hi"] == ("gpt-oss-120b", "gpu-box") and got["hi too"] == ("gpt-oss-20b", None)
        store.set_active_leaf(conv.id, reply.id)
        assert "## Assistant (gpt-oss-120b on gpu-box)" in store.export_markdown(conv.id)
        assert local.remote_host is None
