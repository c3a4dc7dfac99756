"""Conversations as trees: edits and regenerations add siblings, nothing is destroyed; the active
leaf, branch switching, forks, titles, renames, ordering and the streaming saver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.history import HistoryError, HistoryStore, NotFound, StreamingSaver, default_db_path
from app.history.titles import TITLE_LIMIT
from engine.types import Finished, Usage


def test_edit_and_regenerate_add_siblings_and_keep_everything(store: HistoryStore) -> None:
    c = store.create_conversation()
    u1 = store.add_message(c.id, None, "user", "What is 2+2?")
    a1 = store.add_message(c.id, u1.id, "assistant", "4", channel="final", reasoning="easy")
    u2 = store.add_message(c.id, a1.id, "user", "And 3+3?")
    a2 = store.add_message(c.id, u2.id, "assistant", "6")
    assert store.get_conversation(c.id).active_leaf_id == a2.id
    assert [m.id for m in store.thread(c.id)] == [u1.id, a1.id, u2.id, a2.id]

    # Regenerate the first answer: a sibling of a1; it becomes the active leaf.
    a1b = store.add_message(c.id, u1.id, "assistant", "four")
    assert [m.id for m in store.siblings(a1.id)] == [a1.id, a1b.id]
    assert [m.id for m in store.siblings(a1b.id)] == [a1.id, a1b.id]
    assert [m.id for m in store.thread(c.id)] == [u1.id, a1b.id]
    # Edit the first question: a sibling at the root.
    u1b = store.add_message(c.id, None, "user", "What is 2+3?")
    assert [m.id for m in store.siblings(u1.id)] == [u1.id, u1b.id]
    assert [m.content for m in store.thread(c.id)] == ["What is 2+3?"]

    # Nothing was destroyed; the old branch is still reachable.
    assert len(store.messages(c.id)) == 6
    assert [m.content for m in store.thread(c.id, a2.id)] == ["What is 2+2?", "4", "And 3+3?", "6"]
    assert store.thread(c.id, a1.id)[-1].reasoning == "easy"

    # Switch back with ‹ ›: set_active_leaf is exact; select_branch follows the newest child down.
    store.set_active_leaf(c.id, u1.id)
    assert [m.id for m in store.thread(c.id)] == [u1.id]
    leaf = store.select_branch(a1.id)
    assert leaf.id == a2.id
    assert store.get_conversation(c.id).active_leaf_id == a2.id
    assert store.deepest_leaf(u1.id).id == a1b.id  # newest child of u1 is a1b, a leaf
    assert [m.id for m in store.children(u1.id)] == [a1.id, a1b.id]


def test_fork_copies_the_path_and_leaves_the_source_alone(store: HistoryStore) -> None:
    c = store.create_conversation("Trip planning")
    u1 = store.add_message(c.id, None, "user", "Plan a trip")
    a1 = store.add_message(c.id, u1.id, "assistant", "Sure", usage={"completion_tokens": 3})
    u2 = store.add_message(c.id, a1.id, "user", "To Oslo")
    store.add_message(c.id, u2.id, "assistant", "Oslo plan")
    store.add_message(c.id, u1.id, "assistant", "Other branch")
    before = store.messages(c.id)

    f = store.fork(c.id, u2.id)
    assert f.id != c.id and f.title == "Trip planning (fork)"
    copied = store.thread(f.id)
    assert [(m.role, m.content, m.usage, m.created_at) for m in copied] == [
        (m.role, m.content, m.usage, m.created_at) for m in store.thread(c.id, u2.id)
    ]
    assert not {m.id for m in copied} & {m.id for m in before}
    assert copied[0].parent_id is None and all(b.parent_id == a.id for a, b in zip(copied, copied[1:]))
    assert len(store.messages(f.id)) == 3  # only the path, no other branches
    assert store.messages(c.id) == before
    assert store.list_conversations()[0].id == f.id


def test_tree_errors(store: HistoryStore) -> None:
    c1, c2 = store.create_conversation(), store.create_conversation()
    m1 = store.add_message(c1.id, None, "user", "hi")
    with pytest.raises(NotFound):
        store.add_message(c2.id, m1.id, "assistant", "cross-conversation parent")
    with pytest.raises(NotFound):
        store.set_active_leaf(c2.id, m1.id)
    with pytest.raises(NotFound):
        store.thread(c2.id, m1.id)
    with pytest.raises(NotFound):
        store.get_conversation(999)
    with pytest.raises(NotFound):
        store.add_message(999, None, "user", "x")
    with pytest.raises(ValueError):
        store.add_message(c1.id, None, "robot", "x")
    with pytest.raises(ValueError):
        store.update_message(m1.id, status="finished")
    assert store.thread(c2.id) == []


def test_titles_rename_and_list_order(store: HistoryStore) -> None:
    c = store.create_conversation()
    assert c.title is None
    long = "  Explain   the\nrules of chess to a child, including castling, en passant and promotion please "
    store.add_message(c.id, None, "developer", "Be brief.")  # not a user message: no title from it
    assert store.get_conversation(c.id).title is None
    store.add_message(c.id, None, "user", long)
    title = store.get_conversation(c.id).title
    assert title is not None and title.endswith("…") and len(title) <= TITLE_LIMIT + 1
    assert title.startswith("Explain the rules of chess to a child")
    assert "  " not in title and "\n" not in title
    store.add_message(c.id, None, "user", "Another question")  # already titled: unchanged
    assert store.get_conversation(c.id).title == title

    short = store.create_conversation()
    store.add_message(short.id, None, "user", "  Hello  ")
    assert store.get_conversation(short.id).title == "Hello"
    named = store.create_conversation("  Named  ")
    store.add_message(named.id, None, "user", "ignored for the title")
    assert store.get_conversation(named.id).title == "Named"

    assert [x.id for x in store.list_conversations()] == [named.id, short.id, c.id]
    store.rename_conversation(c.id, "  Chess  ")
    assert store.get_conversation(c.id).title == "Chess"
    assert store.list_conversations()[0].id == c.id
    store.set_active_leaf(short.id, store.thread(short.id)[0].id)  # viewing does not reorder
    assert store.list_conversations()[0].id == c.id
    assert store.rename_conversation(c.id, "   ").title is None
    store.rename_conversation(c.id, "Chess again")
    with pytest.raises(NotFound):
        store.rename_conversation(999, "x")
    # Renames went through the full-text index's triggers without damaging it.
    with sqlite3.connect(store.path) as raw:
        raw.execute("INSERT INTO titles_fts(titles_fts) VALUES ('integrity-check')")
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")


def test_streaming_saver_writes_at_most_once_per_interval(store: HistoryStore) -> None:
    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "count")
    now = [0.0]
    saver = StreamingSaver.start(store, c.id, u.id, interval_s=1.0, clock=lambda: now[0])
    assert store.get_message(saver.message_id).status == "streaming"
    sent = ""
    for i in range(50):  # 5 s of deltas at 0.1 s each
        now[0] += 0.1
        saver.add("final", f"{i},")
        sent += f"{i},"
        stored = store.get_message(saver.message_id).content
        assert sent.startswith(stored)
        unsaved = sent[len(stored):].count(",")
        assert unsaved <= 10  # never more than 1 s of deltas behind
    assert 4 <= saver.writes <= 5  # about one write per second, not one per delta
    saver.add("analysis", "late thought")
    saver.flush()
    assert store.get_message(saver.message_id).reasoning == "late thought"
    usage = Usage(prompt_tokens=5, completion_tokens=50, decode_tokens_per_s=12.5)
    final = saver.finish_from(Finished(reason="cancelled", usage=usage))
    assert final.status == "stopped" and final.content == sent and final.reasoning == "late thought"
    assert final.usage is not None and final.usage["completion_tokens"] == 50
    assert final.usage["decode_tokens_per_s"] == 12.5

    errored = StreamingSaver.start(store, c.id, u.id)
    errored.add("final", "partial")
    msg = errored.finish_from(Finished(reason="error", error="Out of memory"))
    assert (msg.status, msg.error, msg.content) == ("error", "Out of memory", "partial")
    assert [m.id for m in store.siblings(final.id)] == [final.id, msg.id]


def test_saver_keeps_tool_calls_apart_from_answer_and_reasoning(store: HistoryStore) -> None:
    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "weather?")
    now = [0.0]
    saver = StreamingSaver.start(store, c.id, u.id, interval_s=1.0, clock=lambda: now[0])
    saver.add("analysis", "Need a tool.")
    saver.add("commentary", '{"city":', "functions.get_weather")
    saver.add("commentary", ' "Oslo"}', "functions.get_weather")
    saver.add("commentary", "{}", "functions.now")
    now[0] += 2
    saver.flush()   # a write mid-stream keeps the calls too (a crash loses at most the last second)
    calls = [{"recipient": "functions.get_weather", "arguments": '{"city": "Oslo"}'},
             {"recipient": "functions.now", "arguments": "{}"}]
    mid = store.get_message(saver.message_id)
    assert (mid.content, mid.reasoning, mid.usage) == ("", "Need a tool.", None)
    assert mid.tool_calls == tuple((c["recipient"], c["arguments"]) for c in calls)
    assert StreamingSaver(store, saver.message_id).tool_calls == [(c["recipient"], c["arguments"]) for c in calls]
    final = saver.finish_from(Finished(reason="tool_call", usage=Usage(completion_tokens=9)))
    assert final.content == "" and final.status == "done"
    assert final.tool_calls == mid.tool_calls and final.usage["completion_tokens"] == 9
    assert final.finish_reason == "tool_call" and "tool_calls" not in final.usage


def test_default_db_path_is_in_the_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("LANTERN_DATA_DIR", raising=False)
    path = default_db_path()
    assert path.name == "history.sqlite3"
    assert "Lantern" in path.parts
    if path.is_relative_to(tmp_path):  # Linux: platformdirs honours XDG_DATA_HOME
        assert path == tmp_path / "Lantern" / "history.sqlite3"


def test_saver_stops_writing_when_its_conversation_is_deleted(store: HistoryStore) -> None:
    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "q")
    now = [0.0]
    saver = StreamingSaver.start(store, c.id, u.id, clock=lambda: now[0])
    saver.add("final", "before")
    store.delete_conversation(c.id)
    now[0] += 5.0
    saver.add("final", " after")  # would write now; the row is gone, so nothing is written back
    assert saver.deleted
    assert saver.finish("done") is None
    assert store.list_conversations() == [] and store.search("after") == []


def test_every_default_path_follows_lantern_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The history's and the model manager's own defaults agree with the app's (one data folder)."""
    from app import paths
    from app.models.manager import default_models_dir

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "portable"))
    assert default_db_path() == paths.history_db_path() == tmp_path / "portable" / "history.sqlite3"
    assert default_models_dir() == paths.default_models_dir() == tmp_path / "portable" / "models"


def test_unreadable_file_raises_a_history_error(tmp_path: Path) -> None:
    bad = tmp_path / "h.db"
    bad.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(HistoryError, match="cannot be read"):
        HistoryStore(bad)
    assert bad.read_bytes() == b"this is not a database at all" * 200
