"""The window end to end with a scripted engine: send, stream, stop, regenerate, edit, versions, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from app.history.store import HistoryStore
from app.messages import ChatDelta, ChatFinished
from engine.errors import OutOfMemory
from tests.app.conftest import Env
from tests.app.fakes import DEFAULT_ANALYSIS

ROOT = Path(__file__).resolve().parents[2]
ANALYSIS = "".join(DEFAULT_ANALYSIS)


def test_composer_is_disabled_with_a_reason_until_a_model_is_loaded(env: Env) -> None:
    composer = env.window.chat.composer
    assert not composer.edit.isEnabled() and not composer.button.isEnabled()
    assert "No model loaded" in composer.reason_label.text()
    assert not env.controller.send("hello")
    env.load()
    assert composer.edit.isEnabled() and composer.reason_label.isHidden()
    assert env.window.status.model_label.text() == "fake-oss"
    assert env.window.status.device_label.text() == "CPU · AVX2"
    assert "cpu-avx2" in env.window.status.device_label.toolTip()
    assert env.application.settings.settings.last_model == "/models/fake-oss"  # loaded again at start


def test_enter_sends_and_reply_streams_with_reasoning_apart(env: Env, qtbot) -> None:  # noqa: ANN001
    env.load()
    edit = env.window.chat.composer.edit
    qtbot.keyClicks(edit, "first line")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)  # newline, no send
    qtbot.keyClicks(edit, "second line")
    assert env.controller.conversation_id is None
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    env.wait_idle()
    assert edit.toPlainText() == ""
    thread = env.controller.thread
    assert [m.role for m in thread] == ["user", "assistant"]
    assert thread[0].content == "first line\nsecond line"
    reply = thread[1]
    assert reply.status == "done" and reply.reasoning == ANALYSIS
    assert ANALYSIS not in reply.content and reply.content.startswith("Hello! Here is code")
    assert env.store.get_conversation(env.controller.conversation_id).title == "first line second line"
    # the model saw the user's text and no reasoning of its own
    assert env.engine.calls[-1][-1].content == "first line\nsecond line"
    widget = env.window.chat.widgets[-1]
    assert widget.text == reply.content and "print('hi')" in widget.code_blocks[0]
    assert ANALYSIS not in widget.body.toPlainText()
    assert widget.reasoning_toggle.isVisible() and not widget.reasoning_toggle.isChecked()  # collapsed
    assert "Thought for" in widget.reasoning_toggle.text()
    assert "unfiltered" in widget.reasoning_toggle.text()
    assert "tok/s" in env.window.status.speed_label.text()
    assert "first token 0.25 s" in env.window.status.ttft_label.text()
    assert "/ 8,192" in env.window.status.context_label.text()


def test_a_new_turn_keeps_the_widgets_of_earlier_messages(env: Env) -> None:
    env.load()
    env.send_and_wait("one")
    before = list(env.window.chat.widgets)
    env.send_and_wait("two")
    after = env.window.chat.widgets
    assert len(after) == 4 and after[:2] == before  # same objects: long chats are not re-rendered
    env.window.apply_appearance()  # a theme change re-renders everything
    assert not set(env.window.chat.widgets) & set(after)


def test_instructions_and_sampling_settings_reach_the_engine(env: Env) -> None:
    env.application.settings.update(instructions="Answer in French.", reasoning_effort="high", temperature=0.5)
    env.load()
    env.send_and_wait("hi")
    env.send_and_wait("again")
    messages = env.engine.calls[-1]
    assert messages[0].role == "developer" and messages[0].content == "Answer in French."
    assert [m.role for m in messages] == ["developer", "user", "assistant", "user"]
    assert messages[2].channel == "final" and ANALYSIS not in messages[2].content  # earlier reasoning dropped
    params = env.engine.params[-1]
    assert (params.reasoning_effort, params.temperature) == ("high", 0.5) and params.current_date


def test_hidden_reasoning_is_not_shown_but_still_timed(env: Env) -> None:
    env.application.settings.update(show_reasoning=False)
    env.load()
    env.send_and_wait("hi")
    widget = env.window.chat.widgets[-1]
    assert widget.reasoning_frame.isHidden() and not widget.reasoning_toggle.isEnabled()
    assert widget.reasoning_toggle.text().startswith("Thought for") and "unfiltered" not in widget.reasoning_toggle.text()
    widget.reasoning_toggle.setChecked(True)
    assert widget.reasoning_frame.isHidden()


def test_copy_code_block_and_message(env: Env) -> None:
    env.load()
    env.send_and_wait("code please")
    widget = env.window.chat.widgets[-1]
    widget._on_anchor(__import__("PySide6.QtCore", fromlist=["QUrl"]).QUrl("copy-code:0"))
    assert QGuiApplication.clipboard().text() == "print('hi')"
    widget.copy_button.click()
    assert QGuiApplication.clipboard().text() == widget.text


def test_reasoning_streams_live_then_collapses(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.delay = 0.08
    env.load()
    assert env.controller.send("think")
    qtbot.waitUntil(lambda: env.window.chat.live is not None and bool(env.window.chat.live.reasoning), timeout=5000)
    live = env.window.chat.live
    assert live.reasoning_toggle.isChecked() and live.reasoning_frame.isVisible()  # open while thinking
    assert "Thinking" in live.reasoning_toggle.text() and live.text == ""
    qtbot.waitUntil(lambda: bool(live.text), timeout=5000)
    assert not live.reasoning_toggle.isChecked()  # folded once the answer started
    env.wait_idle()


def test_stop_keeps_partial_reply_marked_stopped(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.delay = 0.05
    env.load()
    assert env.controller.send("long answer please")
    qtbot.waitUntil(lambda: env.controller.turn is not None and env.controller.turn.analysis != "", timeout=5000)
    env.window.stop_action.trigger()  # Esc; the key binding is checked in test_shortcuts_and_accessible_names
    env.wait_idle()
    reply = env.store.get_message(env.controller.thread[-1].id)
    assert reply.status == "stopped"
    assert "(reply 1)" not in reply.content  # it did not run to the end
    assert "stopped" in env.window.chat.widgets[-1].status_label.text()


def test_stop_right_after_send_still_stops(env: Env) -> None:
    env.engine.delay = 0.05
    env.load()
    assert env.controller.send("stop at once")
    env.controller.stop()  # maybe before the worker took the request: ChatStarted re-sends the cancel
    env.wait_idle()
    assert env.store.get_message(env.controller.thread[-1].id).status == "stopped"


def test_regenerate_adds_a_sibling_and_versions_switch(env: Env) -> None:
    env.load()
    env.send_and_wait("hi")
    first = env.controller.thread[-1]
    env.window.regenerate_action.trigger()
    env.wait_idle()
    second = env.controller.thread[-1]
    assert second.id != first.id and second.parent_id == first.parent_id
    assert "(reply 2)" in second.content and "(reply 1)" in first.content
    widget = env.window.chat.widgets[-1]
    assert widget.sibling_label.text() == "2/2" and widget.prev_button.isVisible()
    widget.prev_button.click()
    assert env.controller.thread[-1].id == first.id
    assert env.window.chat.widgets[-1].sibling_label.text() == "1/2"
    assert "(reply 1)" in env.window.chat.widgets[-1].text
    # nothing destroyed: both replies are still stored
    assert {m.id for m in env.store.siblings(first.id)} == {first.id, second.id}


def test_edit_and_resend_branches_and_keeps_the_original(env: Env) -> None:
    env.load()
    env.send_and_wait("what is 2+2")
    original_user, original_reply = env.controller.thread
    env.window.chat.widgets[0].begin_edit()
    env.window.chat.widgets[0].editor.setPlainText("what is 3+3")
    env.window.chat.widgets[0]._submit_edit()
    env.wait_idle()
    user, reply = env.controller.thread
    assert user.content == "what is 3+3" and user.id != original_user.id and user.parent_id is None
    assert env.engine.calls[-1][-1].content == "what is 3+3"
    assert env.window.chat.widgets[0].sibling_label.text() == "2/2"
    env.controller.switch_sibling(user.id, -1)  # back to the first version, with its own reply
    assert [m.id for m in env.controller.thread] == [original_user.id, original_reply.id]


def test_fork_copies_the_branch_to_a_new_chat(env: Env) -> None:
    env.load()
    env.send_and_wait("fork me")
    source = env.controller.conversation_id
    texts = [m.content for m in env.controller.thread]
    env.window.fork_action.trigger()
    env.wait_sidebar()
    assert env.controller.conversation_id != source
    assert [m.content for m in env.controller.thread] == texts
    assert env.window.sidebar.list.count() == 2


def test_engine_errors_are_shown_and_the_app_goes_on(env: Env, qtbot) -> None:  # noqa: ANN001
    env.load()
    env.factory.fail = OutOfMemory("The model needs 13.0 GB but 8.0 GB is free.")
    env.controller.load_model(Path("/models/big"))
    qtbot.waitUntil(lambda: env.window.chat.banner.isVisible(), timeout=5000)
    assert "13.0 GB" in env.window.chat.banner.text()
    assert env.controller.loading is None and env.controller.model is None  # the old one was unloaded first
    assert "No model loaded" in env.window.chat.composer.reason_label.text()
    assert env.window.status.model_label.text() == "No model loaded"
    env.factory.fail = None
    env.engine.error_finish = "The reply broke off."
    env.load()
    env.send_and_wait("hi")
    assert env.controller.thread[-1].status == "error"
    assert "broke off" in env.window.chat.widgets[-1].status_label.text()
    env.engine.error_finish = None
    env.engine.raise_on_chat = ZeroDivisionError("bug")
    env.controller.regenerate()
    env.wait_idle()
    assert "Internal error" in env.window.chat.banner.text()


def test_a_tool_call_is_shown_apart_from_the_answer_and_kept_in_history(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.final = []
    env.engine.tool_call = ("functions.get_weather", ['{"location": ', '"Tokyo"}'])
    env.engine.finish_reason = "tool_call"
    env.load()
    env.send_and_wait("weather in Tokyo?")
    reply = env.controller.thread[-1]
    assert reply.content == "" and reply.reasoning == ANALYSIS    # not the answer, not reasoning
    assert reply.tool_calls == (("functions.get_weather", '{"location": "Tokyo"}'),) and reply.finish_reason == "tool_call"
    assert "tool_calls" not in reply.usage
    widget = env.window.chat.widgets[-1]
    assert widget.tool_calls == [("functions.get_weather", '{"location": "Tokyo"}')]
    assert "Tokyo" not in widget.body.toPlainText() and widget.text == ""
    toggle, view = widget.tool_call_toggles[0], widget.tool_call_views[0]
    assert toggle.isVisible() and "Tool call: functions.get_weather" in toggle.text()
    assert not toggle.isChecked() and not view.isVisible()          # collapsed
    toggle.click()
    assert view.isVisible() and '{"location": "Tokyo"}' in view.toPlainText()
    assert "tried to call a tool" in widget.note_label.text()
    # reopening the chat rebuilds the block from the history
    cid = env.controller.conversation_id
    env.window.new_chat()
    env.controller.open_conversation(cid)
    reopened = env.window.chat.widgets[-1]
    assert reopened is not widget and reopened.tool_calls == widget.tool_calls and reopened.text == ""
    # the tool call never goes back to the model as answer text
    env.engine.tool_call, env.engine.finish_reason = None, "stop"
    env.engine.final = ["ok"]
    env.send_and_wait("never mind")
    assert all("Tokyo\"}" not in m.content for m in env.engine.calls[-1])


def test_a_failed_history_write_at_the_end_of_a_reply_does_not_leave_the_window_busy(env: Env, monkeypatch) -> None:  # noqa: ANN001,E501
    import sqlite3

    real_update = env.store.update_message

    def failing_update(message_id: int, **fields):  # noqa: ANN003, ANN202
        if fields.get("status") is not None:   # the final write of the reply
            raise sqlite3.OperationalError("disk I/O error")
        return real_update(message_id, **fields)

    env.load()
    monkeypatch.setattr(env.store, "update_message", failing_update)
    env.send_and_wait("hi")   # waits until the turn is over: it must end although the write failed
    assert not env.controller.busy
    assert "could not be saved" in env.window.chat.banner.text() and "disk I/O error" in env.window.chat.banner.text()
    monkeypatch.setattr(env.store, "update_message", real_update)
    env.send_and_wait("again")   # the window still works
    assert env.controller.thread[-1].status == "done" and env.controller.thread[-1].content.endswith("(reply 2)")


def test_a_failed_history_write_on_send_keeps_the_text_and_says_why(env: Env, qtbot, monkeypatch) -> None:  # noqa: ANN001
    import sqlite3

    env.load()

    def full(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise sqlite3.OperationalError("database or disk is full")

    real_add = env.store.add_message
    monkeypatch.setattr(env.store, "add_message", full)
    edit = env.window.chat.composer.edit
    qtbot.keyClicks(edit, "keep me")
    qtbot.keyClick(edit, Qt.Key.Key_Return)      # raised out of the send slot before
    assert edit.toPlainText() == "keep me"       # not sent, so not cleared
    assert not env.controller.busy and "disk is full" in env.window.chat.banner.text()
    monkeypatch.setattr(env.store, "add_message", real_add)
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    env.wait_idle()
    assert [m.content for m in env.controller.thread][0] == "keep me" and edit.toPlainText() == ""


def test_export_to_an_unwritable_place_says_so(env: Env, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import app.widgets.main_window as mw

    env.load()
    env.send_and_wait("export me")
    target = tmp_path / "no such folder" / "chat.md"
    monkeypatch.setattr(mw.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    env.window.export_chat("md")          # raised out of the menu action before
    assert not target.exists()
    assert "Could not export the chat" in env.window.chat.banner.text()
    good = tmp_path / "chat.json"
    monkeypatch.setattr(mw.QFileDialog, "getSaveFileName", lambda *a, **k: (str(good), ""))
    env.window.export_chat("json")
    assert "export me" in good.read_text(encoding="utf-8")


def test_stale_events_are_dropped(env: Env) -> None:
    env.load()
    env.send_and_wait("hi")
    before = [(m.id, m.content) for m in env.store.thread(env.controller.conversation_id)]
    env.controller.on_event(ChatDelta(999, "final", "GHOST"))
    env.controller.on_event(ChatFinished(999, "stop"))
    after = [(m.id, m.content) for m in env.store.thread(env.controller.conversation_id)]
    assert after == before and "GHOST" not in env.window.chat.widgets[-1].text


def test_the_failure_of_a_turn_whose_chat_was_deleted_is_not_shown(env: Env, gated) -> None:  # noqa: ANN001
    from app.messages import WorkerFailed

    env.load()
    assert env.controller.send("doomed")
    rid, cid = env.controller.turn.request_id, env.controller.conversation_id
    env.controller.delete(cid)                     # gives the turn up while the worker still runs it
    assert env.controller.turn is None
    env.controller.on_event(WorkerFailed(rid, "user", "GHOST FAILURE"))
    assert "GHOST FAILURE" not in env.window.chat.banner.text()
    env.controller.on_event(WorkerFailed(None, "bug", "Internal error: real"))   # not a turn's: still shown
    assert "Internal error: real" in env.window.chat.banner.text()
    gated.set()


def test_streaming_renders_are_coalesced(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.delay = 0.5  # the fake would take seconds: we feed the controller by hand meanwhile
    env.load()
    assert env.controller.send("stream")
    turn = env.controller.turn
    start = env.window.chat.render_count
    for i in range(200):
        env.controller.on_event(ChatDelta(turn.request_id, "final", f"w{i} "))
    qtbot.wait(80)
    renders = env.window.chat.render_count - start
    assert 1 <= renders <= 3, renders
    assert env.window.chat.live.text.startswith("w0 w1 w2")
    env.controller.stop()
    env.wait_idle()


def test_sidebar_search_rename_delete(env: Env, qtbot, monkeypatch) -> None:  # noqa: ANN001
    env.load()
    env.send_and_wait("tell me about lighthouses")
    first = env.controller.conversation_id
    env.window.new_chat()
    env.send_and_wait("bread recipes")
    sidebar = env.window.sidebar
    assert sidebar.list.item(0).text() == "bread recipes"  # newest first
    sidebar.search.setText("lighthouse")
    qtbot.waitUntil(lambda: sidebar.list.count() >= 1 and "lighthouses" in sidebar.list.item(0).text(), timeout=3000)
    sidebar.search.setText("Hello")  # in the replies' text: full text search covers messages
    qtbot.waitUntil(lambda: sidebar.list.count() >= 2, timeout=3000)
    sidebar.search.clear()
    qtbot.waitUntil(lambda: sidebar.list.count() == 2 and "Hello" not in sidebar.list.item(0).text(), timeout=3000)
    env.controller.rename(first, "Lights")
    env.wait_sidebar()
    assert sorted(sidebar.list.item(i).text() for i in range(2)) == ["Lights", "bread recipes"]
    import app.widgets.sidebar as sb

    def select(cid: int) -> None:
        sidebar.list.setCurrentRow(next(i for i in range(sidebar.list.count())
                                        if sidebar.list.item(i).data(sb.ID_ROLE) == cid))

    monkeypatch.setattr(sb.QInputDialog, "getText", lambda *a, **k: ("Lighthouses", True))
    select(first)
    sidebar._rename_selected()  # F2
    env.wait_sidebar()
    assert env.store.get_conversation(first).title == "Lighthouses"
    monkeypatch.setattr(sb.QMessageBox, "question", lambda *a, **k: sb.QMessageBox.StandardButton.Yes)
    select(first)
    sidebar._delete_selected()  # Delete
    env.wait_sidebar()
    assert sidebar.list.count() == 1 and first not in [c.id for c in env.store.list_conversations()]


def test_shortcuts_and_accessible_names(env: Env) -> None:
    w = env.window
    expected = {w.new_action: "Ctrl+N", w.search_action: "Ctrl+F", w.stop_action: "Esc",
                w.regenerate_action: "Ctrl+R", w.settings_action: "Ctrl+,", w.models_action: "Ctrl+M"}
    for action, keys in expected.items():
        assert action.shortcut().toString() == keys
    help_text = "\n".join(w.shortcut_lines())
    assert "Ctrl+R — Regenerate" in help_text and "Esc — Stop" in help_text
    for widget in (w.chat.composer.edit, w.chat.composer.button, w.sidebar.search, w.sidebar.list,
                   w.sidebar.new_button):
        assert widget.accessibleName()


def test_the_window_uses_the_one_model_manager_the_application_built(env: Env) -> None:
    assert env.window.model_manager is env.application.models is not None
    env.application.settings.update(offline=True)  # no network in tests
    env.window.models_action.trigger()
    assert env.window._models_panel.manager is env.application.models


def test_models_entry_opens_the_model_manager_panel(env: Env, tmp_path: Path) -> None:
    pytest.importorskip("app.widgets.models_panel")
    env.application.settings.update(offline=True)  # no network in tests
    env.window.models_action.trigger()
    dialog, panel = env.window._models_dialog, env.window._models_panel
    assert dialog is not None and dialog.isVisible() and panel is not None
    assert env.window._model_manager.offline and env.window._model_manager.models_dir == tmp_path / "data" / "models"
    panel.load_requested.emit(tmp_path)
    env.qtbot.waitUntil(lambda: env.controller.model is not None, timeout=5000)
    assert env.factory.requests[-1].model_dir == tmp_path and not dialog.isVisible()
    assert panel._loaded == tmp_path  # the panel is told which model is loaded
    panel.unload_requested.emit()
    env.qtbot.waitUntil(lambda: env.controller.model is None, timeout=5000)
    assert "No model loaded" in env.window.chat.composer.reason_label.text()


def test_quit_stops_generation_and_joins_the_worker(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.delay = 0.05
    env.load()
    assert env.controller.send("go on forever")
    qtbot.waitUntil(lambda: env.controller.turn is not None and env.controller.turn.analysis != "", timeout=5000)
    reply_id = env.controller.turn.message_id
    env.application.shutdown()
    assert not env.application.worker._thread.isRunning()
    assert env.engine.closed
    with HistoryStore(env.store.path) as reopened:  # the application closed its store
        assert reopened.get_message(reply_id).status == "stopped"
        assert reopened.recovered_ids == ()  # saved as stopped on quit, not found mid-stream later


def test_window_appears_before_torch_is_imported(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "--self-test"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"QT_QPA_PLATFORM": "offscreen", "LANTERN_CONFIG_DIR": str(tmp_path / "cfg"),
             "LANTERN_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "window-shown visible=True torch-imported=False" in out.stdout


def test_last_model_is_loaded_at_start(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QApplication

    from app.application import Application
    from app.settings import SettingsStore
    from tests.app.fakes import FakeFactory

    model = tmp_path / "gpt-oss-20b"
    model.mkdir()
    settings = SettingsStore(tmp_path / "settings.json")
    settings.update(last_model=str(model), device="cpu", context_length=4096)
    factory = FakeFactory()
    application = Application(QApplication.instance(), store=HistoryStore(tmp_path / "h.sqlite3"),
                              settings=settings, engine_factory=factory)
    qtbot.addWidget(application.window)
    try:
        application.start()
        qtbot.waitUntil(lambda: application.controller.model is not None, timeout=5000)
        request = factory.requests[0]
        assert (request.model_dir, request.device, request.max_context) == (model, "cpu", 4096)
    finally:
        application.shutdown()


def test_long_chats_open_with_the_last_page_and_load_earlier_on_demand(env: Env) -> None:
    from app.widgets.chat_view import PAGE

    conv = env.store.create_conversation()
    parent = None
    for i in range(35):
        parent = env.store.add_message(conv.id, parent, "user", f"q{i}").id
        parent = env.store.add_message(conv.id, parent, "assistant", f"a{i}", channel="final").id
    env.controller.open_conversation(conv.id)
    chat = env.window.chat
    assert 1 <= len(chat.widgets) < PAGE and chat.building   # the newest at once, the rest in slices
    env.qtbot.waitUntil(lambda: not chat.building, timeout=5000)
    assert len(chat.widgets) == PAGE and chat.widgets[-1].text == "a34" and chat.more_button.isVisible()
    assert [w.message_id for w in chat.widgets] == [m.id for m in env.controller.thread[-PAGE:]]
    chat.more_button.click()
    assert len(chat.widgets) == 2 * PAGE and not chat.more_button.isHidden()
    chat.more_button.click()
    assert len(chat.widgets) == 70 and chat.more_button.isHidden()
    assert [w.text for w in chat.widgets[:2]] == ["q0", "a0"]


def test_search_hit_opens_the_branch_that_holds_it(env: Env, qtbot) -> None:  # noqa: ANN001
    from app.widgets.chat_view import PAGE

    conv = env.store.create_conversation()
    parent = None
    for i in range(25):
        parent = env.store.add_message(conv.id, parent, "user", f"q{i}").id
        parent = env.store.add_message(conv.id, parent, "assistant", f"a{i}", channel="final").id
    first_user = env.store.thread(conv.id)[0]
    old = env.store.add_message(conv.id, None, "user", "zebra crossing")  # another version of the first message
    env.store.select_branch(first_user.id)  # the long branch is the active one
    sidebar = env.window.sidebar
    sidebar.search.setText("zebra")
    qtbot.waitUntil(lambda: sidebar.list.count() >= 1 and "zebra" in sidebar.list.item(0).text(), timeout=3000)
    sidebar.list.itemActivated.emit(sidebar.list.item(0))
    assert [m.id for m in env.controller.thread] == [old.id]
    env.store.select_branch(first_user.id)
    env.window.open_search_hit(conv.id, first_user.id)  # an old message beyond the first page
    assert len(env.controller.thread) == 50 and len(env.window.chat.widgets) > PAGE
    assert env.window.chat.widgets[0].message_id == first_user.id
