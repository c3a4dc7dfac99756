"""Issue 12's window behaviour: what it says while it works (prefill progress, live stats, load stages
and cancel), what it keeps (a refused folder leaves the model loaded, a crash-cut reply reopened and
marked), and the chat gaps (per-chat effort and instructions, presets, import, folded long messages,
the status bar's name and device)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from app.history.store import HistoryStore
from app.history.streaming import StreamingSaver
from app.widgets.message_widget import CUT_OFF_TEXT
from app.widgets.status_bar import device_label
from engine.errors import ModelFilesError
from tests.app.conftest import Env
from tests.app.fakes import FakeFactory, fake_info


def test_the_reply_says_it_is_reading_a_long_prompt_with_its_progress(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.prompt_tokens, env.engine.prefill_chunk, env.engine.prefill_delay = 1200, 256, 0.15
    env.engine.delay = 0.03
    env.load()
    assert env.controller.send("a long question")
    live = lambda: env.window.chat.live  # noqa: E731
    qtbot.waitUntil(lambda: live() is not None and "Reading your message" in live().progress_label.text(),
                    timeout=5000)
    text = live().progress_label.text()
    assert "%" in text and "/ 1,200 tokens" in text and live().progress_label.isVisible()
    qtbot.waitUntil(lambda: env.controller.turn is not None and env.controller.turn.stats is not None
                    and env.controller.turn.stats.phase == "decode", timeout=5000)
    qtbot.waitUntil(lambda: "context 1,2" in env.window.status.context_label.text(), timeout=5000,
                    )  # live meter
    env.wait_idle()
    assert env.window.chat.widgets[-1].progress_label.isHidden()
    # reopening the chat shows what it uses of the context
    cid = env.controller.conversation_id
    env.window.new_chat()
    env.controller.open_conversation(cid)
    assert "context 1,2" in env.window.status.context_label.text()


def test_tokens_per_second_update_while_the_reply_streams(env: Env, qtbot) -> None:  # noqa: ANN001
    env.engine.delay = 0.05
    env.load()
    assert env.controller.send("go")
    qtbot.waitUntil(lambda: "tok/s" in env.window.status.speed_label.text() and env.controller.turn is not None,
                    timeout=5000)
    env.wait_idle()


def test_a_folder_that_is_not_a_model_leaves_the_loaded_model_loaded(env: Env, qtbot) -> None:  # noqa: ANN001
    env.load()
    env.factory.refuse = ModelFilesError("model-00001-of-00002.safetensors is truncated")
    env.application.model_controller.load_now(Path("/models/broken"))
    banner = env.window.chat.banner
    qtbot.waitUntil(lambda: banner.isVisible() and "truncated" in banner.text(), timeout=5000)
    assert "fake-oss is still loaded" in banner.text()
    assert env.controller.model is not None and env.controller.model.name == "fake-oss"
    assert env.window.chat.composer.edit.isEnabled() and env.window.status.model_label.text() == "fake-oss"
    env.send_and_wait("still there?")
    assert env.controller.thread[-1].status == "done"
    env.factory.refuse = None
    env.application.model_controller.load_now(Path("/models/other"))     # the condition is gone: so is the banner
    qtbot.waitUntil(lambda: env.controller.model is not None and env.controller.model.name == "other", timeout=5000)
    assert banner.isHidden()


def test_loading_shows_its_stages_and_can_be_cancelled(env: Env, qtbot) -> None:  # noqa: ANN001
    release = threading.Event()
    env.factory.load_gate = release           # the load waits after "Reading weights"; "Ready" is the next stage
    env.controller.load_model(Path("/models/slow"))
    card = env.window.chat.loading_card
    qtbot.waitUntil(lambda: card.isVisible() and "Reading weights" in card.label.text(), timeout=5000)
    assert env.window.status.progress.isVisible() and env.window.cancel_load_action.isEnabled()
    card.cancel_button.click()
    assert "Cancelling" in card.label.text() and not card.cancel_button.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: env.application.model_controller.loading is None, timeout=5000)
    assert env.controller.model is None and card.isHidden() and "cancelled" in env.window.chat.banner.text()


def test_after_a_crash_the_next_start_reopens_the_chat_and_marks_the_reply_cut_off(qtbot, tmp_path: Path,  # noqa: ANN001
                                                                                    monkeypatch) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QApplication

    from app.application import Application
    from app.settings import SettingsStore

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    db = tmp_path / "h.sqlite3"
    with HistoryStore(db) as store:
        other = store.create_conversation()
        store.add_message(other.id, None, "user", "an older chat")
        c = store.create_conversation()
        u = store.add_message(c.id, None, "user", "tell me")
        stopped = store.add_message(c.id, u.id, "assistant", "I was stopped", status="stopped",
                                    finish_reason="cancelled")
        saver = StreamingSaver.start(store, c.id, u.id)
        saver.add("final", "half a repl")
        saver.flush()                       # then the process dies: the reply stays "streaming"
        store.create_conversation()         # a newer (empty) chat, so the crashed one is not simply the latest
    application = Application(QApplication.instance(), store=HistoryStore(db),
                              settings=SettingsStore(tmp_path / "s.json"), engine_factory=FakeFactory())
    qtbot.addWidget(application.window)
    try:
        application.start(autoload=False)
        assert application.controller.conversation_id == c.id
        banner = application.window.chat.banner
        assert banner.isVisible() and "closed unexpectedly" in banner.text()
        qtbot.waitUntil(lambda: len(application.window.chat.widgets) == 2, timeout=3000)
        widgets = {w.message_id: w for w in application.window.chat.widgets}
        cut = widgets[saver.message_id]
        assert cut.status_label.text() == CUT_OFF_TEXT and cut.status_label.objectName() == "interrupted"
        assert "half a repl" in cut.text
        application.controller.switch_sibling(saver.message_id, -1)
        qtbot.waitUntil(lambda: not application.window.chat.building, timeout=3000)
        user_stopped = next(w for w in application.window.chat.widgets if w.message_id == stopped.id)
        assert user_stopped.status_label.text() == "· stopped" and user_stopped.status_label.objectName() != \
            "interrupted"
    finally:
        application.shutdown()


def test_effort_and_instructions_per_chat_from_the_composer(env: Env) -> None:
    s = env.application.settings
    s.update(reasoning_effort="low", instructions="Default instructions.")
    env.load()
    composer = env.window.chat.composer
    assert composer.effort.currentData() == "low"
    composer.effort.setCurrentIndex(composer.effort.findData("high"))
    composer.effort.activated.emit(composer.effort.currentIndex())        # as a click does
    env.controller.set_chat_instructions("Answer in French.")
    env.send_and_wait("bonjour")
    assert env.engine.params[-1].reasoning_effort == "high"
    assert env.engine.calls[-1][0].content == "Answer in French."
    cid = env.controller.conversation_id
    assert env.store.get_conversation(cid).settings.reasoning_effort == "high"
    env.window.new_chat()                                                   # a new chat: the defaults again
    assert composer.effort.currentData() == "low" and "Default instructions" in composer.instructions_button.text()
    env.send_and_wait("hello")
    assert env.engine.params[-1].reasoning_effort == "low" and env.engine.calls[-1][0].content == "Default instructions."
    env.controller.open_conversation(cid)                                   # reopened: its own settings
    assert composer.effort.currentData() == "high" and "French" in composer.instructions_button.text()
    env.controller.save_preset("French", "Answer in French.")
    assert s.settings.instruction_presets == (("French", "Answer in French."),)
    assert composer._presets == (("French", "Answer in French."),)


def test_the_cli_and_the_window_default_to_the_same_effort() -> None:
    import argparse

    from app.settings import Settings
    from engine.chat_cli import configure_parser
    from engine.types import DEFAULT_REASONING_EFFORT, GenerationParams

    args = configure_parser(argparse.ArgumentParser()).parse_args(["--model", "/m"])
    assert args.reasoning == Settings().reasoning_effort == GenerationParams().reasoning_effort == \
        DEFAULT_REASONING_EFFORT


def test_import_a_chat_from_json_opens_it(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.widgets.main_window as mw

    env.load()
    env.send_and_wait("export me please")
    exported = tmp_path / "chat.json"
    monkeypatch.setattr(mw.QFileDialog, "getSaveFileName", lambda *a, **k: (str(exported), ""))
    env.window.export_chat("json")
    seen: list[str] = []
    monkeypatch.setattr(mw.QFileDialog, "getOpenFileName", lambda _w, _t, start, _f: (seen.append(start),
                                                                                     (str(exported), ""))[1])
    env.window.import_action.trigger()
    env.wait_sidebar()
    assert seen and Path(seen[0]) == mw.documents_dir()                   # dialogs start in Documents
    assert len(env.store.list_conversations()) == 2 and env.window.sidebar.list.count() == 2
    assert [m.content for m in env.controller.thread][0] == "export me please"
    bad = tmp_path / "not-a-chat.json"
    bad.write_text(json.dumps({"hello": 1}))
    monkeypatch.setattr(mw.QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    env.window.import_chat()
    assert "Could not import not-a-chat.json" in env.window.chat.banner.text()


def test_a_long_pasted_message_is_folded_with_show_all(env: Env) -> None:
    env.load()
    text = "\n".join(f"line {i}" for i in range(300))
    env.send_and_wait(text)
    user = env.window.chat.widgets[0]
    assert user.collapsed and user.show_all_button.isVisible() and "300 lines" in user.show_all_button.text()
    assert "line 299" not in user.body.toPlainText() and user.text == text
    user.show_all_button.click()
    assert "line 299" in user.body.toPlainText() and user.show_all_button.text() == "Show less"


def test_the_status_bar_shows_the_whole_name_elided_in_the_middle_and_a_short_device() -> None:
    from dataclasses import replace

    info = replace(fake_info(Path("/models/openai--gpt-oss-120b-with-a-very-long-local-name")),
                   backend="cpu-reference", fallback_reason="CUDA is not available")
    plain = replace(info, fallback_reason=None)      # a CPU-only machine on auto: not a fallback
    assert device_label(plain) == "CPU · pure torch" and device_label(replace(plain, backend="cpu-avx2")) == "CPU · AVX2"
    assert device_label(replace(plain, backend="cpu-avx512")) == "CPU · AVX-512"
    assert device_label(replace(plain, device="cuda", backend="cuda-triton")) == "CUDA · Triton"
    assert device_label(info) == "CPU · pure torch (fell back: CUDA is not available)"
    from app.widgets.status_bar import StatusBar

    bar = StatusBar()
    bar.on_model(info)
    bar.model_label.resize(120, 20)
    shown = bar.model_label.shown_text()
    assert bar.model_label.text() == info.name and "…" in shown and shown.startswith("open") and \
        shown.endswith("name")
    assert info.name in bar.model_label.toolTip()


def test_a_bug_is_shown_as_a_bug(env: Env, qtbot) -> None:  # noqa: ANN001
    env.load()
    env.engine.raise_on_chat = KeyError("oops")
    env.controller.send("hi")
    env.wait_idle()
    banner = env.window.chat.banner
    assert "a bug, not something you did" in banner.text() and banner.property("kind") == "bug"
    assert "bug in Lantern" in env.window.chat.widgets[-1].status_label.text() or \
        "error" in env.window.chat.widgets[-1].status_label.text()
    env.engine.raise_on_chat = None
    env.send_and_wait("again")                     # a reply that works clears the notice
    assert banner.isHidden()
