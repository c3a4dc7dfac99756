"""Schema upgrades: a v1 database written by hand (old DDL, old data) is upgraded in place,
its data kept, and a backup of the old file is written first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.history import HistoryError, HistoryStore, SchemaTooNew
from app.history import migrations

# The v1 schema exactly as version 1 shipped it (copied here on purpose, not imported).
V1_DDL = [
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        active_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL)""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL, channel TEXT, content TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'done',
        usage_json TEXT, created_at REAL NOT NULL)""",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
    "CREATE INDEX messages_by_parent ON messages(parent_id)",
]

V1_MESSAGES = [  # id, conversation, parent, role, channel, content, status, usage_json, created_at
    (1, 1, None, "user", None, "Wie spät ist es in Zürich?", "done", None, 100.0),
    (2, 1, 1, "assistant", "final", "Keine Uhr hier, leider.", "done", '{"completion_tokens": 7}', 101.0),
    (3, 1, 1, "assistant", "final", "Regenerated answer about Zürich time", "stopped", None, 102.0),
    (4, 2, None, "user", None, "second conversation text", "done", None, 200.0),
]


def write_v1(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in V1_DDL:
        db.execute(statement)
    db.execute("INSERT INTO conversations VALUES (1, 'Zürich time', 100.0, 102.0, NULL)")
    db.execute("INSERT INTO conversations VALUES (2, NULL, 200.0, 200.0, NULL)")
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", V1_MESSAGES)
    db.execute("UPDATE conversations SET active_leaf_id = 3 WHERE id = 1")
    db.execute("UPDATE conversations SET active_leaf_id = 4 WHERE id = 2")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_v1_database_is_upgraded_with_data_intact_and_backed_up(tmp_path: Path) -> None:
    db_path = tmp_path / "history.sqlite3"
    write_v1(db_path)
    old_bytes = db_path.read_bytes()

    store = HistoryStore(db_path)
    assert store.backup_path is not None and store.backup_path.exists()
    assert store.backup_path.parent == tmp_path
    assert store.backup_path.name.startswith("history.sqlite3.v1-")
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION >= 2
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # Data intact, with the new columns at their defaults.
    thread = store.thread(1)
    assert [(m.id, m.parent_id, m.role, m.content, m.status) for m in thread] == [
        (1, None, "user", "Wie spät ist es in Zürich?", "done"),
        (3, 1, "assistant", "Regenerated answer about Zürich time", "stopped"),
    ]
    assert all(m.reasoning == "" and m.error is None for m in thread)
    assert [m.id for m in store.siblings(2)] == [2, 3]
    assert store.get_message(2).usage == {"completion_tokens": 7}
    assert [c.id for c in store.list_conversations()] == [2, 1]
    assert store.get_conversation(1).title == "Zürich time"
    # The migration filled the new full-text index from the old rows.
    assert {h.message_id for h in store.search("zurich") if h.message_id} == {1, 3}
    assert [h.conversation_id for h in store.search("zurich") if h.field == "title"] == [1]
    store.close()

    # The backup is the old database: same schema version, same rows, no new columns.
    with sqlite3.connect(store.backup_path) as backup:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == 1
        assert backup.execute("SELECT * FROM messages ORDER BY id").fetchall() == V1_MESSAGES
        columns = {r[1] for r in backup.execute("PRAGMA table_info(messages)")}
        assert "reasoning" not in columns
        assert backup.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(old_bytes) > 0

    # Opening the upgraded file again migrates nothing and writes no second backup.
    again = HistoryStore(db_path)
    assert again.backup_path is None
    assert len(list(tmp_path.glob("*.bak"))) == 1
    again.close()


def test_new_database_gets_latest_schema_without_backup(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "sub" / "h.db")
    assert store.backup_path is None
    assert list((tmp_path / "sub").glob("*.bak")) == []
    with sqlite3.connect(tmp_path / "sub" / "h.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
    store.close()


def test_failed_migration_rolls_back_to_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "h.db"
    write_v1(db_path)

    def broken_v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")
        conn.execute("ALTER TABLE no_such_table ADD COLUMN x TEXT")  # fails half-way through

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.MIGRATIONS[0], broken_v2))
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", 2)
    with pytest.raises(HistoryError, match="Upgrading .* failed .*no such table"):
        HistoryStore(db_path)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "reasoning" not in {r[1] for r in raw.execute("PRAGMA table_info(messages)")}
        assert raw.execute("SELECT * FROM messages ORDER BY id").fetchall() == V1_MESSAGES
    assert len(list(tmp_path.glob("h.db.v1-*.bak"))) == 1


def test_database_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    db_path = tmp_path / "h.db"
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE future (x)")
        raw.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew):
        HistoryStore(db_path)
    assert db_path.read_bytes() == before
    assert list(tmp_path.glob("*.bak")) == []


def test_v2_tool_calls_and_finish_reason_move_out_of_the_usage_json(tmp_path: Path) -> None:
    """v3: what rode inside usage_json becomes columns; a crash-cut reply differs from a stopped one."""
    import json

    db_path = tmp_path / "h.db"
    conn = sqlite3.connect(db_path, isolation_level=None)
    for target in (1, 2):
        conn.execute("BEGIN")
        migrations.MIGRATIONS[target - 1](conn)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 't', 1, 1)")
    calls = [{"recipient": "functions.get_weather", "arguments": '{"city": "Oslo"}'}]
    rows = [  # id, parent, role, content, status, error, usage
        (1, None, "user", "q", "done", None, None),
        (2, 1, "assistant", "", "done", None, json.dumps({"completion_tokens": 4, "tool_calls": calls,
                                                           "finish_reason": "tool_call"})),
        (3, 1, "assistant", "long", "done", None, json.dumps({"finish_reason": "length", "max_tokens": 16})),
        (4, 1, "assistant", "cut", "stopped", "Interrupted: Lantern closed before this reply finished.", None),
        (5, 1, "assistant", "stop", "stopped", None, json.dumps({"completion_tokens": 2})),
        (6, 1, "assistant", "ok", "done", None, json.dumps({"completion_tokens": 2})),
    ]
    for r in rows:
        conn.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, status, error, usage_json,"
                     " created_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, 1)", r)
    conn.close()
    with HistoryStore(db_path) as store:
        m = {i: store.get_message(i) for i in range(1, 7)}
        assert m[2].tool_calls == (("functions.get_weather", '{"city": "Oslo"}'),)
        assert m[2].usage == {"completion_tokens": 4} and m[2].finish_reason == "tool_call"
        assert m[3].finish_reason == "length" and m[3].usage == {"max_tokens": 16}
        assert m[4].interrupted and m[4].finish_reason == "interrupted" and m[4].status == "stopped"
        assert m[5].finish_reason == "cancelled" and not m[5].interrupted
        assert m[6].finish_reason == "stop" and m[1].finish_reason is None
        assert store.get_conversation(1).settings.reasoning_effort is None
