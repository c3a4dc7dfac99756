"""The tools' part of the history: migration v5 (attachments, chat_tools, messages.browser_pages_json)
from v4 and v3 and from v1, and tool rounds with their results and browser pages kept by the store, the
streaming saver, Fork, the JSON export/import and the Markdown export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.history import attachments as rows
from app.history import migrations
from app.history.attachments import ChatToolSwitches
from app.history.store import HistoryStore
from app.history.streaming import StreamingSaver
from tests.app.test_history_migrations import write_v1

ROUNDS = [
    {"recipient": "browser.search", "arguments": '{"query": "leave"}', "author": "browser.search",
     "result": "[0] leave policy", "status": "ok"},
    {"recipient": "python", "arguments": "print(2 + 2)", "author": "python", "result": "4\n", "status": "ok"},
    {"recipient": "functions.lookup", "arguments": "{}"},                       # not run by Lantern
]
PAGES = [{"kind": "search", "title": "leave", "url": "https://docs.local/search?q=leave", "line_docs": [None, 3]},
         {"kind": "document", "title": "policy.md", "url": "https://docs.local/3", "doc": 3}]


def _upgrade_to(conn: sqlite3.Connection, version: int) -> None:
    for target in range(migrations.schema_version(conn) + 1, version + 1):
        conn.execute("BEGIN")
        migrations.MIGRATIONS[target - 1](conn)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as raw:
        return {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.mark.parametrize("old", [4, 3])
def test_migration_v5_keeps_the_data_and_adds_the_tools_tables(tmp_path: Path, old: int) -> None:
    db_path = tmp_path / "h.db"
    conn = sqlite3.connect(db_path, isolation_level=None)
    _upgrade_to(conn, old)
    conn.execute("INSERT INTO conversations (id, title, created_at, updated_at, settings_json) "
                 "VALUES (1, 't', 1, 1, '{\"reasoning_effort\": \"high\"}')")
    conn.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at) "
                 "VALUES (1, 1, NULL, 'user', 'q', 'done', 1)")
    conn.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, status, usage_json, created_at,"
                 " tool_calls_json, finish_reason) VALUES (2, 1, 1, 'assistant', '', 'done', '{\"completion_tokens\": 3}',"
                 " 2, ?, 'tool_call')", (json.dumps([{"recipient": "functions.f", "arguments": "{}"}]),))
    if old == 4:
        conn.execute("UPDATE messages SET model = 'gpt-oss-20b', remote_host = 'gpu-box:8000' WHERE id = 2")
    conn.close()
    assert migrations.SCHEMA_VERSION == 5
    assert not {"attachments", "chat_tools"} & _tables(db_path)

    with HistoryStore(db_path) as store:
        assert store.backup_path is not None and store.backup_path.name.startswith(f"h.db.v{old}-")
        reply = store.get_message(2)
        assert reply.tool_calls == (("functions.f", "{}"),) and reply.finish_reason == "tool_call"
        assert reply.tool_rounds == ({"recipient": "functions.f", "arguments": "{}"},) and reply.browser_pages == ()
        assert reply.usage == {"completion_tokens": 3}
        assert (reply.model, reply.remote_host) == (("gpt-oss-20b", "gpu-box:8000") if old == 4 else (None, None))
        assert store.get_conversation(1).settings.reasoning_effort == "high"
        # the new tables work, and go with their chat
        a = rows.add_attachment(store, 1, name="n.txt", kind="file", mode="referenced", source_path="/x/n.txt",
                                inline_text="hello", size=5)
        rows.set_switches(store, 1, ChatToolSwitches(True, False))
        assert rows.bind_pending_inline(store, 1, 1) == [rows.get_attachment(store, a.id)]
        assert rows.switches(store, 1) == ChatToolSwitches(True, False)
        store.delete_conversation(1)
        assert rows.attachments(store, 1) == [] and rows.switches(store, 1) == ChatToolSwitches()
    with sqlite3.connect(store.backup_path) as backup:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == old
        assert "browser_pages_json" not in {r[1] for r in backup.execute("PRAGMA table_info(messages)")}


def test_migration_from_v1_runs_every_step(tmp_path: Path) -> None:
    db_path = tmp_path / "history.sqlite3"
    write_v1(db_path)
    with HistoryStore(db_path) as store:
        assert store.backup_path is not None and store.backup_path.name.startswith("history.sqlite3.v1-")
        assert [m.content for m in store.thread(1)] == ["Wie spät ist es in Zürich?",
                                                         "Regenerated answer about Zürich time"]
        assert store.get_message(2).tool_rounds == () and store.get_message(3).finish_reason == "cancelled"
        reply = store.add_message(1, 3, "assistant", "a", tool_calls=ROUNDS, browser_pages=PAGES, model="m")
        rows.set_switches(store, 2, ChatToolSwitches(True, True))
    assert {"attachments", "chat_tools", "messages_fts"} <= _tables(db_path)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 5
    with HistoryStore(db_path) as again:
        assert again.backup_path is None
        stored = again.get_message(reply.id)
        assert list(stored.tool_rounds) == ROUNDS and list(stored.browser_pages) == PAGES and stored.model == "m"
        assert rows.switches(again, 2) == ChatToolSwitches(True, True)


def test_tool_rounds_and_pages_are_kept_by_saver_fork_export_and_import(store: HistoryStore) -> None:
    conv = store.create_conversation()
    user = store.add_message(conv.id, None, "user", "How many days?")
    saver = StreamingSaver.start(store, conv.id, user.id, interval_s=0.0)
    saver.add("analysis", '{"query": "leave"}', "browser.search")
    saver.record_tool_call(1, "browser.search", '{"query": "leave"}')
    saver.set_browser_pages(PAGES[:1])
    saver.set_tool_result(1, "browser.search", "[0] leave policy", "ok")
    saver.record_tool_call(2, "python", "print(2 + 2)")           # arguments never streamed
    saver.set_browser_pages(PAGES)
    saver.set_tool_result(2, "python", "4\n", "ok")
    saver.add("commentary", "{}", "functions.lookup")
    saver.add("final", "Four 【1†L2】.")
    # a streaming write already holds the results (a crash keeps them)
    assert list(store.get_message(saver.message_id).tool_rounds) == ROUNDS
    saver.finish("done", usage={"completion_tokens": 9}, finish_reason="stop")
    reply = store.get_message(saver.message_id)
    assert list(reply.tool_rounds) == ROUNDS and list(reply.browser_pages) == PAGES
    assert reply.tool_calls == tuple((r["recipient"], r["arguments"]) for r in ROUNDS)
    assert reply.usage == {"completion_tokens": 9}

    # a saver opened on the stored reply (a regenerate continues nothing, but a reopen reads it back)
    again = StreamingSaver(store, reply.id)
    assert again.tool_rounds == ROUNDS and list(again.browser_pages) == PAGES

    fork = store.fork(conv.id)
    forked = store.thread(fork.id)[-1]
    assert list(forked.tool_rounds) == ROUNDS and list(forked.browser_pages) == PAGES

    exported = store.export_json(conv.id)
    [entry] = [m for m in exported["messages"] if m["role"] == "assistant"]
    assert entry["tool_calls"] == ROUNDS and entry["browser_pages"] == PAGES and "usage" in entry
    assert "browser_pages" not in next(m for m in exported["messages"] if m["role"] == "user")
    imported = store.import_json(exported)
    assert store.export_json(imported.id) == exported
    assert list(store.thread(imported.id)[-1].tool_rounds) == ROUNDS

    markdown = store.export_markdown(conv.id)
    assert "<summary>Tool call: python</summary>" in markdown and "```python\nprint(2 + 2)\n```" in markdown
    assert "Result (ok):\n\n```text\n4\n```" in markdown
    assert "<summary>Tool call: functions.lookup</summary>" in markdown   # shown, with no result
    assert markdown.count("Result (") == 2


def test_citations_of_a_streamed_reply_are_linked_block_by_block(qtbot, monkeypatch) -> None:  # noqa: ANN001
    """Linking citations keeps the incremental rendering: a finished block is rendered once, however
    many updates follow; only the open tail is rendered again."""
    from app.widgets import message_widget as mw

    rendered: list[str] = []      # the finished blocks rendered (the open tail is rendered with `highlight`)
    tails: list[str] = []
    real = mw.render_markdown
    monkeypatch.setattr(mw, "render_markdown", lambda text, *a, **k: (tails if "highlight" in k else rendered)
                        .append(text) or real(text, *a, **k))
    w = mw.MessageWidget(7, "assistant")
    qtbot.addWidget(w)
    paragraphs = [f"Paragraph {i} says so 【{i % 3}†L{i}-L{i + 2}】." for i in range(12)]
    text = ""
    for p in paragraphs:
        for piece in (p[:10], p[10:]):
            text += piece
            w.set_text(text, streaming=True)
        text += "\n\n"
        w.set_text(text, streaming=True)
    assert len(rendered) == len(paragraphs) - 1          # each finished block once, its citation linked
    for i, block in enumerate(rendered):
        assert block.startswith(f"Paragraph {i} ") and f"(cite:{i % 3}/{i}/{i + 2})" in block
    assert all(t.count("Paragraph") <= 2 for t in tails)  # the tail: the open paragraph (and the next one starting)
    w.set_text(text.rstrip("\n"))            # the finished reply
    html = w.body.toHtml()
    assert all(f"cite:{i % 3}/{i}/{i + 2}" in html for i in range(12))
    clicked: list[tuple[int, int, int, int]] = []
    w.citation_clicked.connect(lambda *a: clicked.append(a))
    from PySide6.QtCore import QUrl

    w._on_anchor(QUrl("cite:1/4/6"))
    assert clicked == [(7, 1, 4, 6)]
    # code is left alone
    w.set_text("```\nx = '【1†L2】'\n```")
    assert "cite:" not in w.body.toHtml()
