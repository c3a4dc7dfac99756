"""A full tool round trip in the window: attach, search, open, approve python, answer with citations;
stored in the history, exported, citations opening the document; a chat's files deleted with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication

from app.application import Application
from app.history import attachments as rows
from app.history.store import HistoryStore
from app.settings import SettingsStore
from tests.app.tools_support import CARRY_LINE, CARRY_PAGE_LINE, POLICY_LINES, scripted_round_trip, write_policy
from tests.tools.harmony_fake import HarmonyScriptEngine, scripted_factory


@pytest.fixture
def app_env(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    engines: list[HarmonyScriptEngine] = [scripted_round_trip()]
    settings = SettingsStore(tmp_path / "settings.json")
    store = HistoryStore(tmp_path / "history.sqlite3")
    application = Application(QApplication.instance(), store=store, settings=settings,
                              engine_factory=lambda r, p: scripted_factory(engines[0])(r, p))
    qtbot.addWidget(application.window)
    application.start(autoload=False)
    application.tools_ui.bar.confirm_python = lambda text: True
    application.controller.load_model(Path("/models/gpt-oss-20b"))
    qtbot.waitUntil(lambda: application.controller.model is not None, timeout=5000)
    yield application, engines
    application.shutdown()


def _attach(application: Application, paths: list[Path], qtbot) -> None:  # noqa: ANN001
    application.tools_ui.attach([str(p) for p in paths])
    application.tools.wait_idle()
    qtbot.waitUntil(lambda: not application.tools.busy, timeout=5000)
    QApplication.processEvents()


def test_a_tool_round_trip_through_the_window(app_env, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    application, engines = app_env
    c, ui, engine = application.controller, application.tools_ui, engines[0]
    policy = write_policy(tmp_path / "user docs")
    _attach(application, [policy], qtbot)
    cid = c.conversation_id
    assert cid is not None
    [attachment] = rows.attachments(application.store, cid)
    assert not attachment.inline and attachment.doc_ids and attachment.mode == "stored"
    assert "leave-policy.md · searchable · copy kept" in ui.bar.chip_buttons[attachment.id].text()
    ui.bar.python_switch.click()
    assert application.tools.switches(cid).python_enabled and ui.bar.always_box.isVisible()

    assert c.send("How many leave days carry over?")
    qtbot.waitUntil(lambda: c.turn is not None and c.turn.pending_approval is not None, timeout=5000)
    qtbot.wait(60)
    live = application.window.chat.live
    assert live is not None
    block = live.tool_blocks.blocks[-1]
    assert block.approval_row.isVisible() and "carried = min(allowance - used, 5)" in block.call_view.toPlainText()
    assert [b.toggle.text() for b in live.tool_blocks.blocks[:2]] == [
        "▸ Browser · search “unused days carry over”", f"▸ Browser · open result 0 at line {CARRY_PAGE_LINE - 4}"]
    block.run_button.click()
    qtbot.waitUntil(lambda: c.turn is None, timeout=10_000)

    reply = application.store.get_message(c.thread[-1].id)
    assert reply.status == "done"
    assert reply.content.startswith("Up to **5 unused days** carry over") and f"【1†L{CARRY_PAGE_LINE}】" in reply.content
    calls = list(reply.tool_rounds)           # the v3 column, with the results (v5 keeps the pages apart)
    assert reply.tool_calls == tuple((k["recipient"], k["arguments"]) for k in calls)
    assert "tool_calls" not in (reply.usage or {}) and "browser_pages" not in (reply.usage or {})
    assert [k["recipient"] for k in calls] == ["browser.search", "browser.open", "python"]
    assert [k["status"] for k in calls] == ["ok", "ok", "ok"]
    assert calls[0]["result"].startswith("[0] unused days carry over\n")
    assert f"L{CARRY_PAGE_LINE}: Up to 5 unused days carry over to the next year." in calls[1]["result"]
    assert calls[2]["result"] == "carried over: 4 days\n"
    assert [p["kind"] for p in reply.browser_pages] == ["search", "document"]
    # the model got each result back and the prompt grew by appending (the KV cache keeps the prefix)
    assert engine.calls[-1][-1].tool_name == "python" and engine.calls[-1][-1].content == "carried over: 4 days\n"
    for before, after in zip(engine.prompts, engine.prompts[1:]):
        assert after[:len(before)] == before
    # the finished reply shows the three tool blocks and its citations as links
    widget = application.window.chat.widgets[-1]
    assert [b.toggle.text() for b in widget.tool_blocks.blocks] == [
        "▸ Browser · search “unused days carry over”", f"▸ Browser · open result 0 at line {CARRY_PAGE_LINE - 4}",
        "▸ Python · ran"]
    # (the end of a streamed reply may stay in its `tail` view: main's incremental rendering)
    shown = widget.body.toHtml() + (widget.tail.toHtml() if widget.tail.isVisible() else "")
    assert f"cite:1/{CARRY_PAGE_LINE}/{CARRY_PAGE_LINE}" in shown
    widget._on_anchor(QUrl(f"cite:1/{CARRY_PAGE_LINE}/{CARRY_PAGE_LINE}"))
    viewer = ui.viewer
    assert viewer is not None and viewer.isVisible()
    assert (viewer.first_line, viewer.last_line) == (CARRY_LINE, CARRY_LINE)
    assert viewer.highlighted_text() == POLICY_LINES[CARRY_LINE]
    viewer.close()

    # stored in the history and exported
    exported = application.store.export_json(cid)
    assert json.dumps(exported).count("carried over: 4 days") == 1
    markdown = application.store.export_markdown(cid)
    assert "<summary>Tool call: python</summary>" in markdown and "Result (ok):" in markdown
    # reopening the chat rebuilds the blocks from the history
    c.new_chat()
    c.open_conversation(cid)
    assert len(application.window.chat.widgets[-1].tool_blocks.blocks) == 3

    folder = application.tools.folder(cid)
    assert (folder / "index.sqlite3").exists() and (folder / "data").is_dir()
    c.delete(cid)
    assert not folder.exists()
    assert rows.attachments(application.store, cid) == []


def test_a_refused_run_and_a_small_file_sent_inline(app_env, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    application, engines = app_env
    c, ui = application.controller, application.tools_ui
    engines[0].replies[:] = [
        "<|channel|>analysis to=python code<|message|>print(open('/etc/hostname').read())<|call|>",
        "<|channel|>final<|message|>I was not allowed to run code.<|return|>"]
    note = tmp_path / "note.txt"
    note.write_text("Remember: the budget meeting moved to Thursday.", encoding="utf-8")
    _attach(application, [note], qtbot)
    [attachment] = rows.attachments(application.store, c.conversation_id)
    assert attachment.inline and "sent with your next message" in ui.bar.chip_buttons[attachment.id].text()
    ui.bar.python_switch.click()
    assert c.send("When is the meeting?")
    qtbot.waitUntil(lambda: c.turn is not None and c.turn.pending_approval is not None, timeout=5000)
    qtbot.wait(60)
    application.window.chat.live.tool_blocks.blocks[-1].deny_button.click()
    qtbot.waitUntil(lambda: c.turn is None, timeout=5000)
    first_prompt = engines[0].calls[0]
    assert first_prompt[-1].content == ("When is the meeting?\n\n--- Attached file `note.txt` ---\n"
                                        "Remember: the budget meeting moved to Thursday.\n--- End of `note.txt` ---")
    assert engines[0].params[0].builtin_tools == ("python",)       # no documents indexed: no browser
    reply = application.store.get_message(c.thread[-1].id)
    [call] = reply.tool_rounds
    assert call["status"] == "denied" and "did not allow" in call["result"]
    widget = application.window.chat.widgets[-1]
    assert widget.tool_blocks.blocks[0].toggle.text() == "▸ Python · not run (you said no)"
    # removing the attachment removes its row; the sent message keeps its text in the history
    ui.bar.chip_buttons[attachment.id].click()
    assert rows.attachments(application.store, c.conversation_id) == []


def test_the_switch_states_the_isolation_and_can_be_declined(app_env) -> None:  # noqa: ANN001
    application, _ = app_env
    ui = application.tools_ui
    asked: list[str] = []
    ui.bar.confirm_python = lambda text: asked.append(text) or False
    ui.bar.python_switch.click()
    assert asked and ("Blocked:" in asked[0] or "No sandbox" in asked[0]) and "Not blocked:" in asked[0]
    assert not ui.bar.python_switch.isChecked()
    if shutil.which("bwrap"):
        assert "bubblewrap" in asked[0]


def test_the_local_api_and_a_chat_with_tools_share_the_one_worker(app_env, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    """An API request is answered by the same worker thread between two tool rounds of the window's chats."""
    import socket

    import openai

    application, engines = app_env
    c, engine = application.controller, engines[0]
    engine.replies[:] = ["<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>",
                         "<|channel|>final<|message|>It is 42.<|return|>",
                         "<|channel|>final<|message|>Hello from the API.<|return|>",
                         "<|channel|>analysis to=python code<|message|>print(6 * 8)<|call|>",
                         "<|channel|>final<|message|>It is 48.<|return|>"]
    application.tools_ui.bar.python_switch.click()
    application.tools_ui.bar.always_box.click()          # "Run without asking"
    assert c.send("What is 6 times 7?")
    qtbot.waitUntil(lambda: c.turn is None, timeout=10_000)
    assert application.store.get_message(c.thread[-1].id).tool_rounds[0]["result"] == "42\n"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    application.settings.update(api_server=True, api_server_port=port)
    client = openai.OpenAI(base_url=application.api_server.address, api_key=application.settings.settings.api_key,
                           max_retries=0, timeout=30)
    r = client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from the API."
    assert engine.params[-1].builtin_tools == ()          # the API's request got no window tools

    assert c.send("And 6 times 8?")                       # the chat's tools still run after it
    qtbot.waitUntil(lambda: c.turn is None, timeout=10_000)
    reply = application.store.get_message(c.thread[-1].id)
    assert reply.content == "It is 48." and reply.tool_rounds[0]["result"] == "48\n"
    application.settings.update(api_server=False)
