"""History schema v3: which model and server wrote a reply (a migration, kept by fork/export/import)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.history import migrations
from app.history.store import HistoryStore


def test_a_v2_history_is_upgraded_and_old_replies_have_no_origin(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    for version, migration in enumerate(migrations.MIGRATIONS[:2], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('old', 1, 1)")
    conn.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'assistant', 'hi', 1)")
    conn.close()
    with HistoryStore(db) as store:
        assert store.backup_path is not None and store.backup_path.name.startswith("history.sqlite3.v2-")
        old = store.get_message(1)
        assert (old.content, old.model, old.remote_host) == ("hi", None, None)
        new = store.add_message(1, 1, "assistant", "from afar", model="openai/gpt-oss-120b", remote_host="gpu-box:8000")
        assert (new.model, new.remote_host) == ("openai/gpt-oss-120b", "gpu-box:8000")
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION >= 3
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
