"""The window with a remote model: add a server, pick its model, chat, stop, errors, offline mode.

The real Application (window, controller, worker thread, history) with the real engine factory,
which picks the remote engine for a server's model; the server is the recorded-stream one."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.application import Application
from app.history.store import HistoryStore
from app.remote.registry import default_registry
from app.settings import SettingsStore
from tests.app.fakes import DEFAULT_ANALYSIS
from tests.app.recorded_server import RecordedServer
from tests.app.recorded_streams import FINAL, recordings
from tests.app.remote_support import memory_keyring, sockets  # noqa: F401 - a fixture

KEY = "sk-window-5d2e"


@pytest.fixture
def app_env(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    from PySide6.QtWidgets import QApplication

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    with memory_keyring(), RecordedServer(recordings(), api_key=KEY) as server:
        settings = SettingsStore(tmp_path / "config" / "settings.json")
        store = HistoryStore(tmp_path / "history.sqlite3")
        application = Application(QApplication.instance(), store=store, settings=settings)   # real factory
        qtbot.addWidget(application.window)
        application.start(autoload=False)
        try:
            yield application, server, tmp_path
        finally:
            application.shutdown()


def add_server_through_the_dialog(qtbot, window, url: str, key: str | None):  # noqa: ANN001, ANN201
    window.open_models()
    section = window.servers_section
    dialog = section.make_dialog()
    dialog.url_edit.setText(url)
    if key:
        dialog.key_edit.setText(key)
    assert not dialog.save_button.isEnabled()            # not before a successful test
    dialog.test_button.click()
    qtbot.waitUntil(lambda: dialog.save_button.isEnabled() or "refused" in dialog.result.text()
                    or "needs" in dialog.result.text(), timeout=5000)
    return section, dialog


def use_model(qtbot, application, section, server_id: str, model: str) -> None:  # noqa: ANN001
    section.card(server_id).use_buttons[model].click()
    qtbot.waitUntil(lambda: application.controller.model is not None
                    and application.controller.model.name == model, timeout=5000)


def test_add_a_server_pick_its_model_and_chat(qtbot, app_env) -> None:  # noqa: ANN001
    application, server, tmp_path = app_env
    window, controller = application.window, application.controller
    host = f"127.0.0.1:{server.port}"
    section, dialog = add_server_through_the_dialog(qtbot, window, server.url, None)
    assert "needs an API key" in dialog.result.text()     # the server's 401, in Lantern's words
    dialog.key_edit.setText(KEY)
    dialog.test_button.click()
    qtbot.waitUntil(dialog.save_button.isEnabled, timeout=5000)
    assert dialog.models_list.count() == len(recordings())
    assert "context 131,072 tokens" in dialog.models_list.item(0).text()
    dialog.save_button.click()
    qtbot.waitUntil(lambda: dialog.saved_server is not None, timeout=5000)
    section.refresh()
    saved = dialog.saved_server
    card = section.card(saved.id)
    assert card is not None and "vllm-reasoning" in card.use_buttons
    badges = [w.text() for w in card.findChildren(type(dialog.result)) if w.objectName() == "hostBadge"]
    assert badges and set(badges) == {f"on {host}"}
    # the key is in the keyring, not in any file Lantern wrote
    for path in (tmp_path / "config").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path

    use_model(qtbot, application, section, saved.id, "vllm-reasoning")
    assert not window._models_dialog.isVisible()
    assert controller.model.remote_host == host
    assert window.status.model_label.text() == f"vllm-reasoning on {host}"
    assert window.status.device_label.text() == "server on this computer"   # a loopback test server
    assert application.settings.settings.last_model.startswith("remote:")
    assert window.empty_text() == f"Ask vllm-reasoning anything. It runs on {host}: your messages are sent there."

    assert controller.send("hello")
    qtbot.waitUntil(lambda: controller.turn is None, timeout=5000)
    reply = application.store.get_message(controller.thread[-1].id)
    assert (reply.status, reply.reasoning, reply.content) == ("done", "".join(DEFAULT_ANALYSIS), "".join(FINAL))
    assert (reply.model, reply.remote_host) == ("vllm-reasoning", host)
    widget = window.chat.widgets[-1]
    assert widget.origin_label.text() == f"on {host}" and not widget.origin_label.isHidden()
    assert server.chat_bodies()[-1]["messages"] == [{"role": "user", "content": "hello"}]

    # a regenerate is a sibling, also marked; the history keeps both versions
    assert controller.regenerate()
    qtbot.waitUntil(lambda: controller.turn is None, timeout=5000)
    siblings = application.store.siblings(controller.thread[-1].id)
    assert len(siblings) == 2 and all(s.remote_host == host for s in siblings)

    # a server without a reasoning parser: the reply says so
    controller.load_remote(saved.target("vllm-no-reasoning"))
    qtbot.waitUntil(lambda: controller.model is not None and controller.model.name == "vllm-no-reasoning",
                    timeout=5000)
    assert controller.send("again")
    qtbot.waitUntil(lambda: controller.turn is None, timeout=5000)
    note = window.chat.widgets[-1].note_label
    assert not note.isHidden() and "Reasoning was not available from " + host in note.text()
    controller.reload_thread()                                # rebuilt from the history: still there
    assert "Reasoning was not available" in window.chat.widgets[-1].note_label.text()
    assert f"({'vllm-no-reasoning'} on {host})" in application.store.export_markdown(controller.conversation_id)


def test_stop_and_errors_in_the_window(qtbot, app_env) -> None:  # noqa: ANN001
    application, server, _ = app_env
    window, controller = application.window, application.controller
    registered, _ = default_registry().add(server.url, api_key=KEY)
    controller.load_remote(registered.target("vllm-slow"))
    qtbot.waitUntil(lambda: controller.model is not None, timeout=5000)
    assert controller.send("count slowly")
    qtbot.waitUntil(lambda: controller.turn is not None and controller.turn.analysis != "", timeout=5000)
    controller.stop()
    qtbot.waitUntil(lambda: controller.turn is None, timeout=2000)
    reply = application.store.get_message(controller.thread[-1].id)
    assert reply.status == "stopped" and reply.reasoning.startswith("step 0.")
    assert server.client_left.wait(3)

    controller.load_remote(registered.target("llama-context-error"))
    qtbot.waitUntil(lambda: controller.model is not None and controller.model.name == "llama-context-error",
                    timeout=5000)
    assert controller.send("a very long chat")
    qtbot.waitUntil(lambda: controller.turn is None, timeout=5000)
    assert "too long for the model's context" in window.chat.banner.text()
    reply = application.store.get_message(controller.thread[-1].id)
    assert reply.status == "error" and "exceeds the available context size" in reply.error

    controller.load_remote(registered.target("gpt-oss-999b"))        # no longer offered by the server
    card = window.chat.loading_card                                 # the same load card (and Cancel) as a folder
    assert card.isVisible() and card.cancel_button.isEnabled()
    assert card.label.text().startswith(f"Loading gpt-oss-999b on 127.0.0.1:{server.port}")
    qtbot.waitUntil(lambda: controller.loading is None, timeout=5000)
    banner = window.chat.banner.text()
    assert "does not serve “gpt-oss-999b”" in banner
    # the server was asked before anything was unloaded: the model in use stays in use
    assert controller.model is not None and controller.model.name == "llama-context-error"
    assert "llama-context-error is still loaded" in banner
    assert window.status.model_label.text() == f"llama-context-error on 127.0.0.1:{server.port}"


def test_offline_mode_disables_servers_elsewhere_but_not_this_computer(qtbot, app_env) -> None:  # noqa: ANN001
    from app.remote.client import ServerModel

    application, server, _ = app_env
    window = application.window
    registry = default_registry()
    here, _ = registry.add(server.url, models=[ServerModel("vllm-reasoning")])
    far, _ = registry.add("http://10.9.9.9:8000/v1", models=[ServerModel("gpt-oss-120b")])
    application.settings.update(offline=True)
    window.open_models()
    section = window.servers_section
    section.refresh()
    assert section.card(here.id).use_buttons["vllm-reasoning"].isEnabled()
    assert not section.card(far.id).use_buttons["gpt-oss-120b"].isEnabled()
    assert not section.card(far.id).refresh_btn.isEnabled()
    application.controller.load_remote(far.target("gpt-oss-120b"))   # e.g. the last model, at start
    qtbot.waitUntil(lambda: application.controller.loading is None, timeout=5000)
    assert application.controller.model is None and "Offline mode is on" in window.chat.banner.text()
    application.settings.update(offline=False)
    section.refresh()
    assert section.card(far.id).use_buttons["gpt-oss-120b"].isEnabled()


def test_the_last_remote_model_is_used_again_at_start(qtbot, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QApplication

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    with memory_keyring(), RecordedServer(recordings()) as server:
        registered, _ = default_registry().add(server.url)
        settings = SettingsStore(tmp_path / "config" / "settings.json")
        settings.update(last_model=str(registered.target("vllm-reasoning").pseudo_path))
        application = Application(QApplication.instance(), store=HistoryStore(tmp_path / "h.sqlite3"),
                                  settings=settings)
        qtbot.addWidget(application.window)
        try:
            application.start(autoload=True)
            qtbot.waitUntil(lambda: application.controller.model is not None, timeout=5000)
            assert application.controller.model.remote_host == f"127.0.0.1:{server.port}"
            application.window.reload_action.trigger()           # Reload: connect to the server again
            qtbot.waitUntil(lambda: application.controller.loading is None
                            and application.controller.model is not None, timeout=5000)
            assert len([r for r in server.requests if r.path == "/v1/models"]) == 2
        finally:
            application.shutdown()


def test_nothing_is_sent_anywhere_until_a_server_is_added(qtbot, tmp_path: Path, monkeypatch,  # noqa: ANN001
                                                          sockets: list) -> None:
    from PySide6.QtWidgets import QApplication

    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LANTERN_CONFIG_DIR", str(tmp_path / "config"))
    settings = SettingsStore(tmp_path / "config" / "settings.json")
    application = Application(QApplication.instance(), store=HistoryStore(tmp_path / "h.sqlite3"), settings=settings)
    qtbot.addWidget(application.window)
    try:
        application.start(autoload=True, resume_downloads=False)
        application.window.open_models()
        section = application.window.servers_section
        assert section.cards == [] and section.add_button.isEnabled()
        qtbot.wait(200)
    finally:
        application.shutdown()
    assert sockets == []                                        # no connection, no name lookup, anywhere
    assert not (tmp_path / "config" / "servers.json").exists()


def test_editing_a_server_changes_its_key_in_the_keyring_only(qtbot, app_env) -> None:  # noqa: ANN001
    application, server, tmp_path = app_env
    registry = default_registry()
    saved, _ = registry.add(server.url, api_key="sk-old")
    application.window.open_models()
    dialog = application.window.servers_section.make_dialog(registry.get(saved.id))
    assert dialog.url_edit.text() == server.url and "leave empty to keep it" in dialog.key_edit.placeholderText()
    dialog.test_button.click()                                  # with the stored (wrong) key
    qtbot.waitUntil(lambda: "refused the API key" in dialog.result.text(), timeout=5000)
    dialog.key_edit.setText(KEY)
    dialog.name_edit.setText("Lab box")
    dialog.test_button.click()
    qtbot.waitUntil(dialog.save_button.isEnabled, timeout=5000)
    dialog.save_button.click()
    qtbot.waitUntil(lambda: dialog.saved_server is not None, timeout=5000)
    assert registry.key(saved.id) == KEY and registry.get(saved.id).label == "Lab box"
    assert registry.get(saved.id).models and "sk-old" not in (tmp_path / "config" / "servers.json").read_text()


def test_a_remote_load_shows_its_stage_and_cancel_keeps_the_model_in_use(qtbot, app_env) -> None:  # noqa: ANN001
    import threading

    application, server, _ = app_env
    window, controller = application.window, application.controller
    registered, _ = default_registry().add(server.url, api_key=KEY)
    controller.load_remote(registered.target("vllm-reasoning"))
    qtbot.waitUntil(lambda: controller.model is not None, timeout=5000)
    server.models_gate = gate = threading.Event()              # the server now takes its time to answer
    try:
        window.models.load_remote(registered.target("vllm-tool-call"))
        card = window.chat.loading_card
        qtbot.waitUntil(lambda: "Connecting to the server" in card.label.text(), timeout=5000)
        assert card.label.text().startswith(f"Loading vllm-tool-call on 127.0.0.1:{server.port}")
        assert window.cancel_load_action.isEnabled()
        assert window.status.model_label.styleSheet() == ""            # not the pill of the model in use
        card.cancel_button.click()
        qtbot.waitUntil(lambda: controller.loading is None, timeout=2000)   # not the server's time
        assert controller.model is not None and controller.model.name == "vllm-reasoning"
        assert "was cancelled" in window.chat.banner.text() and not card.isVisible()
        assert window.status.model_label.text() == f"vllm-reasoning on 127.0.0.1:{server.port}"
        assert window.status.model_label.styleSheet() != ""            # the pill is back
    finally:
        gate.set()


def test_the_model_controller_loads_reloads_and_names_a_remote_model(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from app.messages import ModelReady
    from app.model_controller import ModelController
    from app.remote.engine import RemoteEngine
    from app.remote.target import RemoteTarget

    class Worker:
        def __init__(self) -> None:
            self.submitted: list = []

        def submit(self, request: object) -> None:
            self.submitted.append(request)

        def cancel_load(self) -> None:
            pass

    worker = Worker()
    settings = SettingsStore(tmp_path / "settings.json")
    target = RemoteTarget("ab12", "http://gpu-box:8000/v1", "gpt-oss:20b", max_context=131072)
    models = ModelController(settings, worker, remote_targets=lambda p: target if p == target.pseudo_path else None)
    notices: list = []
    models.notice.connect(lambda text, kind: notices.append((text, kind)))
    models.load_remote(target)
    request = worker.submitted[-1]
    assert request.remote == target and request.model_dir == target.pseudo_path
    assert models.loading is not None and models.loading.label == "gpt-oss:20b on gpu-box:8000"
    info = RemoteEngine(target).info
    models.on_event(ModelReady(request.request_id, info))
    assert models.model is info and settings.settings.last_model == str(target.pseudo_path)
    assert not models.needs_reload("context_length") and not models.needs_reload("device")
    models.reload()                                         # connects again, with the server's current entry
    assert worker.submitted[-1].remote == target and len(worker.submitted) == 2
    models.remote_targets = lambda p: None                  # the server was removed from the list
    models.reload()
    assert len(worker.submitted) == 2 and notices and "no longer in the list" in notices[-1][0]


def test_live_stats_of_a_remote_reply_show_the_speed_and_leave_the_context_meter(qtbot) -> None:  # noqa: ANN001
    """A server's stream says nothing about the prompt until its end: tok/s live, the meter at the end."""
    from app.messages import LiveStats
    from app.widgets.status_bar import StatusBar

    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.on_context(1200, 8192)
    bar.on_live(LiveStats("decode", 0, 0, 0, 0.0, completion_tokens=25, decode_elapsed_s=1.0), 8192)
    assert bar.speed_label.text() == "24.0 tok/s"
    assert bar.context_label.text() == "context 1,200 / 8,192 (15%)"
    bar.on_live(LiveStats("decode", 1000, 0, 0, 0.0, completion_tokens=25, decode_elapsed_s=1.0), 8192)
    assert bar.context_label.text() == "context 1,025 / 8,192 (13%)"     # a local reply: prompt known
