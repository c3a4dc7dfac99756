"""A writer process killed with SIGKILL in the middle of a reply: every committed message is
intact, the reply keeps what was saved at its last flush, and it is marked stopped on reopen."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.history import INTERRUPTED_NOTE, HistoryStore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

# The writer: three committed messages, then a reply streamed with a fake clock that advances
# 0.3 s per delta and a 1 s save interval. It reports each save, then blocks with unsaved text.
WRITER = r"""
import sys
from pathlib import Path
from app.history import HistoryStore, StreamingSaver

store = HistoryStore(Path(sys.argv[1]))
conv = store.create_conversation()
u1 = store.add_message(conv.id, None, "user", "first question")
a1 = store.add_message(conv.id, u1.id, "assistant", "first answer", channel="final", reasoning="first thoughts")
u2 = store.add_message(conv.id, a1.id, "user", "second question")
print("committed", conv.id, u2.id, flush=True)
now = [0.0]
saver = StreamingSaver.start(store, conv.id, u2.id, interval_s=1.0, clock=lambda: now[0])
print("reply", saver.message_id, flush=True)
writes = 0
for i in range(int(sys.argv[2])):
    now[0] += 0.3
    saver.add("analysis" if i < 6 else "final", f"t{i} ")
    if saver.writes != writes:
        writes = saver.writes
        print("saved", i, flush=True)
print("waiting", flush=True)
sys.stdin.read()
"""

# The racing writer: a real clock, a 10 ms interval, deltas as fast as it can; killed at a random moment.
RACER = r"""
import sys, time
from pathlib import Path
from app.history import HistoryStore, StreamingSaver

store = HistoryStore(Path(sys.argv[1]))
conv = store.create_conversation("race")
u = store.add_message(conv.id, None, "user", "go")
saver = StreamingSaver.start(store, conv.id, u.id, interval_s=0.01)
print("started", saver.message_id, flush=True)
i = 0
while True:
    saver.add("final", f"w{i} ")
    i += 1
    if i % 50 == 0:
        time.sleep(0.001)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_kill_mid_reply_keeps_committed_messages_and_last_flush(tmp_path: Path) -> None:
    db_path = tmp_path / "h.db"
    deltas = 22
    proc = _spawn(WRITER, str(db_path), str(deltas))
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.split())
            if line.startswith("waiting"):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    conv_id, u2_id = int(lines[0][1]), int(lines[0][2])
    reply_id = int(lines[1][1])
    last_saved = max(int(parts[1]) for parts in lines if parts[0] == "saved")
    assert last_saved < deltas - 1  # the kill did lose unsaved text, so the check below can fail

    text = [f"t{i} " for i in range(deltas)]
    expected_reasoning = "".join(text[: min(6, last_saved + 1)])
    expected_content = "".join(text[6: last_saved + 1])
    # At most one interval of deltas (1 s / 0.3 s per delta -> at most 3) was not yet saved.
    assert deltas - 1 - last_saved <= 3

    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT status FROM messages WHERE id = ?", (reply_id,)).fetchone()[0] == "streaming"

    store = HistoryStore(db_path)
    assert store.recovered_ids == (reply_id,)
    thread = store.thread(conv_id)
    assert [(m.role, m.content, m.reasoning, m.status) for m in thread[:3]] == [
        ("user", "first question", "", "done"),
        ("assistant", "first answer", "first thoughts", "done"),
        ("user", "second question", "", "done"),
    ]
    reply = thread[3]
    assert (reply.id, reply.parent_id) == (reply_id, u2_id)
    assert reply.reasoning == expected_reasoning
    assert reply.content == expected_content
    assert reply.status == "stopped" and reply.error == INTERRUPTED_NOTE
    store.close()
    assert HistoryStore(db_path).recovered_ids == ()  # recovery happens once


def test_kill_at_a_random_moment_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    db_path = tmp_path / "h.db"
    proc = _spawn(RACER, str(db_path))
    try:
        assert proc.stdout is not None
        reply_id = int(proc.stdout.readline().split()[1])
        time.sleep(0.4)  # many saves happen; the kill lands at an arbitrary point, often mid-write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)

    with HistoryStore(db_path) as store:
        assert store.recovered_ids == (reply_id,)
        reply = store.get_message(reply_id)
        words = reply.content.split()
        assert len(words) > 0
        assert words == [f"w{i}" for i in range(len(words))]  # an exact prefix of what was streamed
        assert reply.status == "stopped"
        assert [m.content for m in store.thread(reply.conversation_id)] == ["go", reply.content]
        assert store.search(words[-1])[0].message_id == reply_id  # the index matches the row
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
