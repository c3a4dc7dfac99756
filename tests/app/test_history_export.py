"""Export to JSON (the whole tree) and Markdown (the active branch); JSON import round trip."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.history import HistoryStore, ImportFormatError, StreamingSaver
from app.history.export import FORMAT, FORMAT_VERSION
from tests.app.history_support import ticking_store


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    # fractional, realistic times: the JSON round trip must keep them exactly
    with ticking_store(tmp_path / "h.db", 1_700_000_000.25, 0.125) as s:
        yield s


def build_tree(store: HistoryStore) -> tuple[int, dict[str, int]]:
    c = store.create_conversation()
    ids: dict[str, int] = {}
    ids["dev"] = store.add_message(c.id, None, "developer", "Answer in *one* line.").id
    ids["u1"] = store.add_message(c.id, ids["dev"], "user", "Naïve question: 2+2? 🤔\n\n```py\nprint(2+2)\n```").id
    ids["a1"] = store.add_message(c.id, ids["u1"], "assistant", "4", channel="final", reasoning="Simple sum.",
                                  usage={"prompt_tokens": 40, "completion_tokens": 9, "decode_tokens_per_s": 17.5}).id
    ids["a1b"] = store.add_message(c.id, ids["u1"], "assistant", "", status="error", error="Out of memory").id
    ids["u2"] = store.add_message(c.id, ids["a1"], "user", "and 3+3?").id
    saver = StreamingSaver.start(store, c.id, ids["u2"])
    saver.add("analysis", "thinking about 3+3")
    saver.add("final", "six (partial")
    saver.finish("stopped")
    ids["a2"] = saver.message_id
    ids["u1b"] = store.add_message(c.id, ids["dev"], "user", "Edited question").id
    store.set_active_leaf(c.id, ids["a2"])  # the active leaf is not the newest message
    return c.id, ids


def test_json_round_trip_is_exact(store: HistoryStore) -> None:
    cid, ids = build_tree(store)
    first = store.export_json(cid)
    assert first["format"] == FORMAT and first["version"] == FORMAT_VERSION
    assert len(first["messages"]) == 7
    # Ids in the file are local (1..n), parents before children; the active leaf resolves to a2.
    by_local = {m["id"]: m for m in first["messages"]}
    assert by_local[first["active_leaf"]]["content"] == "six (partial"
    assert by_local[first["active_leaf"]]["reasoning"] == "thinking about 3+3"
    assert all(m["parent"] is None or m["parent"] < m["id"] for m in first["messages"])

    text = json.dumps(first, ensure_ascii=False)  # through a file's worth of JSON text
    imported = store.import_json(json.loads(text))
    assert imported.id != cid
    second = store.export_json(imported.id)
    assert second == first  # export(import(export(x))) == export(x), ids included (they are local)
    assert json.dumps(second, ensure_ascii=False) == text

    # The imported conversation is a real tree in the store with new database ids.
    new_thread = store.thread(imported.id)
    old_thread = store.thread(cid)
    assert [(m.role, m.content, m.reasoning, m.status, m.error, m.usage, m.created_at) for m in new_thread] == [
        (m.role, m.content, m.reasoning, m.status, m.error, m.usage, m.created_at) for m in old_thread]
    assert not {m.id for m in new_thread} & {m.id for m in old_thread}
    a1_new = new_thread[2]
    assert [s.status for s in store.siblings(a1_new.id)] == ["done", "error"]
    assert (imported.title, imported.created_at, imported.updated_at) == (
        store.get_conversation(cid).title, store.get_conversation(cid).created_at,
        store.get_conversation(cid).updated_at)


def test_a_streaming_reply_is_exported_as_stopped(store: HistoryStore) -> None:
    c = store.create_conversation("live")
    u = store.add_message(c.id, None, "user", "go")
    saver = StreamingSaver.start(store, c.id, u.id)
    saver.add("final", "partial answer")
    saver.flush()
    data = store.export_json(c.id)
    assert data["messages"][-1]["status"] == "stopped"
    assert data["messages"][-1]["content"] == "partial answer"
    again = store.export_json(store.import_json(data).id)
    assert again == data


def test_markdown_shows_the_active_branch(store: HistoryStore) -> None:
    cid, ids = build_tree(store)
    md = store.export_markdown(cid)
    title = store.get_conversation(cid).title
    assert title is not None and md.startswith(f"# {title}\n")
    for text in ("Answer in *one* line.", "```py\nprint(2+2)\n```", "and 3+3?", "six (partial", "thinking about 3+3"):
        assert text in md
    assert "Edited question" not in md and "Out of memory" not in md  # other branches
    assert "2 more messages are in other branches" in md
    assert md.rindex("<details>") < md.index("thinking about 3+3") < md.rindex("</details>") < md.index("six (partial")
    assert "stopped before it finished" in md
    assert md.index("Naïve question") < md.index("and 3+3?")
    store.set_active_leaf(cid, ids["a1b"])
    assert "*(error: Out of memory)*" in store.export_markdown(cid)


def test_tool_calls_survive_both_exports(store: HistoryStore) -> None:
    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "weather?")
    saver = StreamingSaver.start(store, c.id, u.id)
    saver.add("analysis", "Call the tool.")
    saver.add("commentary", '{"city": "Oslo"}', "functions.get_weather")
    saver.finish("done", usage={"completion_tokens": 7})
    md = store.export_markdown(c.id)
    assert '<summary>Tool call: functions.get_weather</summary>\n\n```json\n{"city": "Oslo"}\n```' in md
    data = store.export_json(c.id)
    assert data["messages"][-1]["tool_calls"] == [{"recipient": "functions.get_weather",
                                                   "arguments": '{"city": "Oslo"}'}]
    assert data["messages"][-1]["usage"] == {"completion_tokens": 7} and data["messages"][-1]["finish_reason"] == "stop"
    again = store.import_json(copy.deepcopy(data))
    assert store.export_json(again.id)["messages"] == data["messages"]


def test_markdown_of_an_empty_conversation(store: HistoryStore) -> None:
    c = store.create_conversation()
    assert store.export_markdown(c.id).startswith("# Untitled conversation\n")


def _valid(store: HistoryStore) -> dict:
    c = store.create_conversation("t")
    u = store.add_message(c.id, None, "user", "q")
    store.add_message(c.id, u.id, "assistant", "a")
    return store.export_json(c.id)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(format="something else"), "format"),
    (lambda d: d.update(version=FORMAT_VERSION + 1), "version"),
    (lambda d: d["messages"][0].update(parent=2), "parent"),
    (lambda d: d["messages"][1].update(id=1), "id"),
    (lambda d: d["messages"][0].update(role="wizard"), "role"),
    (lambda d: d["messages"][0].update(status="streaming"), "status"),
    (lambda d: d["messages"][0].update(content=5), "content"),
    (lambda d: d["messages"][0].update(created_at="yesterday"), "created_at"),
    (lambda d: d["messages"][0].update(usage=[1, 2]), "usage"),
    (lambda d: d.update(active_leaf=99), "active_leaf"),
    (lambda d: d.update(messages={}), "messages"),
])
def test_import_rejects_damaged_files(store: HistoryStore, damage, message: str) -> None:
    data = _valid(store)
    before = len(store.list_conversations())
    bad = copy.deepcopy(data)
    damage(bad)
    with pytest.raises(ImportFormatError, match=message):
        store.import_json(bad)
    assert len(store.list_conversations()) == before  # nothing half-imported
    with pytest.raises(ImportFormatError):
        store.import_json([data])


def test_a_version_1_file_imports_with_its_tool_calls_and_finish_reason_moved_out_of_usage(store: HistoryStore) -> None:
    from app.history.models import INTERRUPTED_NOTE

    v1 = {"format": "lantern.conversation", "version": 1, "title": "old", "created_at": 1.0, "updated_at": 2.0,
          "active_leaf": 4, "messages": [
              {"id": 1, "parent": None, "role": "user", "content": "q", "created_at": 1.0},
              {"id": 2, "parent": 1, "role": "assistant", "content": "", "status": "done", "created_at": 1.5,
               "usage": {"completion_tokens": 3, "finish_reason": "tool_call",
                         "tool_calls": [{"recipient": "functions.f", "arguments": "{}"}]}},
              {"id": 3, "parent": 1, "role": "assistant", "content": "half", "status": "stopped",
               "error": INTERRUPTED_NOTE, "created_at": 1.6},
              {"id": 4, "parent": 1, "role": "assistant", "content": "hal", "status": "stopped", "created_at": 1.7}]}
    c = store.import_json(v1)
    replies = [m for m in store.messages(c.id) if m.role == "assistant"]
    assert replies[0].tool_calls == (("functions.f", "{}"),) and replies[0].usage == {"completion_tokens": 3}
    assert [m.finish_reason for m in replies] == ["tool_call", "interrupted", "cancelled"]
    assert replies[1].interrupted and not replies[2].interrupted
    data = store.export_json(c.id)
    assert data["version"] == 2 and store.export_json(store.import_json(copy.deepcopy(data)).id)["messages"] == \
        data["messages"]


def test_chat_settings_are_exported_imported_and_forked(store: HistoryStore) -> None:
    from app.history.models import ChatSettings

    c = store.create_conversation()
    u = store.add_message(c.id, None, "user", "q")
    store.set_chat_settings(c.id, ChatSettings("high", "Be brief."))
    data = store.export_json(c.id)
    assert data["settings"] == {"reasoning_effort": "high", "instructions": "Be brief."}
    assert store.get_conversation(store.import_json(data).id).settings == ChatSettings("high", "Be brief.")
    assert store.get_conversation(store.fork(c.id, u.id).id).settings.reasoning_effort == "high"
