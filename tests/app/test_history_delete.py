"""Delete really deletes: after delete_conversation no byte of its text is left in the database
file or its WAL (Ollama kept deleted chats in db.sqlite, ollama/ollama#11785)."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from app.history import HistoryStore, NotFound, StreamingSaver

# Words that start with "qqq" appear nowhere else, so FTS5's prefix-compressed term lists store
# them in full and a raw byte search finds them in the index as well as in the rows.
MARKER = "qqqmarker7f3a"
MARKER_TITLE = "qqqtitle51c9"


def raw_bytes(db_path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


def fill_other_conversation(store: HistoryStore) -> int:
    conv = store.create_conversation("kept conversation")
    parent = None
    for i in range(30):
        parent = store.add_message(conv.id, parent, "user" if i % 2 == 0 else "assistant",
                                   f"kept message {i} about apples and rivers " * 20).id
    return conv.id


def test_delete_leaves_no_text_in_file_or_wal(tmp_path: Path) -> None:
    db_path = tmp_path / "h.db"
    store = HistoryStore(db_path)
    kept = fill_other_conversation(store)

    doomed = store.create_conversation(f"secret {MARKER_TITLE}")
    u = store.add_message(doomed.id, None, "user", f"my {MARKER} password is {MARKER}")
    store.add_message(doomed.id, u.id, "assistant", f"noted {MARKER}", reasoning=f"they said {MARKER}")
    edit = store.add_message(doomed.id, None, "user", f"edited {MARKER} question")  # a sibling branch
    clock = itertools.count(step=0.5)
    saver = StreamingSaver.start(store, doomed.id, edit.id, interval_s=1.0, clock=lambda: next(clock))
    for i in range(40):  # many saved versions of a growing reply, each an FTS update
        saver.add("analysis" if i < 10 else "final", f" {MARKER}{i % 3}x")
    saver.finish("done")
    fill_other_conversation(store)  # more index segments after the doomed ones

    before = raw_bytes(db_path)
    assert MARKER.encode() in before and MARKER_TITLE.encode() in before  # the check can fail
    with sqlite3.connect(db_path) as raw:  # the terms are in the full-text index's own blobs too
        assert raw.execute("SELECT count(*) FROM messages_fts_data WHERE instr(block, ?)",
                           (MARKER.encode(),)).fetchone()[0] > 0

    store.delete_conversation(doomed.id)

    after = raw_bytes(db_path)
    assert MARKER.encode() not in after
    assert MARKER_TITLE.encode() not in after
    assert b"qqq" not in after  # not even a prefix of a term
    assert not Path(str(db_path) + "-wal").exists() or Path(str(db_path) + "-wal").stat().st_size == 0
    assert store.search(MARKER) == [] and store.search(MARKER_TITLE) == []
    with pytest.raises(NotFound):
        store.get_conversation(doomed.id)
    with pytest.raises(NotFound):
        store.get_message(u.id)
    # The other conversation is untouched and still searchable.
    assert len(store.messages(kept)) == 30
    assert any(h.conversation_id == kept for h in store.search("apples rivers"))
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        raw.execute("INSERT INTO titles_fts(titles_fts) VALUES ('integrity-check')")
    store.close()
    assert MARKER.encode() not in raw_bytes(db_path)


def test_delete_unknown_conversation_raises(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        with pytest.raises(NotFound):
            store.delete_conversation(12345)
