"""Every connection between the parts of the app, in one place: worker -> controllers, controllers
-> window, window's widgets -> controllers, settings -> whoever reacts, model manager -> window.

Widgets wire their own children to their own slots; anything that crosses from one part to another
is connected here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from app.messages import Event

if TYPE_CHECKING:  # pragma: no cover
    from app.application import Application


class ManagerBridge(QObject):
    """Carries model manager events (sent from download threads) to the GUI thread."""

    event = Signal(object)


class MathBridge(QObject):
    """Carries "formulas drawn" from the math drawing thread to the GUI thread."""

    ready = Signal()


class EventRouter(QObject):
    """Receives the worker's events on the GUI thread (a QObject slot, so Qt queues each emission from
    the engine thread; a plain function would run on the engine thread) and hands each to its controller:
    load events to the model controller, the rest to the chat."""

    def __init__(self, models: Any, chat: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._models, self._chat = models, chat

    @Slot(object)
    def route(self, event: Event) -> None:
        if not self._models.on_event(event):
            self._chat.on_event(event)


def connect(app: "Application") -> None:
    c, m, w, s = app.controller, app.model_controller, app.window, app.settings

    # worker -> controllers (load events to the model controller, the rest to the chat)
    router = EventRouter(m, c, w)
    app.worker.event.connect(router.route)

    # model controller -> chat controller and window
    m.changed.connect(c.model_changed)
    m.changed.connect(w.on_model_changed)
    m.progress.connect(w.on_load_progress)
    m.notice.connect(w.show_notice)
    m.notice_cleared.connect(w.clear_notice)
    m.confirm_needed.connect(w.confirm_load)

    # chat controller -> window
    c.conversations_changed.connect(w.refresh_sidebar)
    c.thread_changed.connect(lambda: w.refresh_thread())
    c.turn_updated.connect(w.on_turn_updated)
    c.turn_finished.connect(w.on_turn_finished)
    c.error.connect(w.on_error)
    c.chat_settings_changed.connect(w.on_chat_settings_changed)

    # window's widgets -> controllers
    sidebar, chat, composer = w.sidebar, w.chat, w.chat.composer
    sidebar.new_requested.connect(w.new_chat)
    sidebar.open_requested.connect(w.open_conversation)
    sidebar.hit_requested.connect(w.open_search_hit)
    sidebar.rename_requested.connect(c.rename)
    sidebar.delete_requested.connect(c.delete)
    sidebar.search_changed.connect(lambda _: w.refresh_sidebar())
    composer.submitted.connect(w.send)
    composer.stop_requested.connect(c.stop)
    composer.effort_chosen.connect(c.set_chat_effort)
    composer.instructions_chosen.connect(c.set_chat_instructions)
    composer.preset_saved.connect(c.save_preset)
    chat.edit_submitted.connect(w.edit_and_resend)
    chat.regenerate_requested.connect(lambda mid: c.regenerate(mid))
    chat.sibling_requested.connect(c.switch_sibling)
    chat.cancel_load_requested.connect(m.cancel_load)

    # settings -> application, window
    s.changed.connect(app.on_setting_changed)
    s.changed.connect(w.on_setting_changed)
    QGuiApplication.styleHints().colorSchemeChanged.connect(w.on_system_colors_changed)

    # model manager (download threads) -> window, through a queued bridge
    if app.models is not None:
        bridge = ManagerBridge(w)
        bridge.event.connect(w.on_manager_event)
        listener: Any = bridge.event.emit
        app.models.subscribe(listener)
        app._manager_listener = listener

    # formulas drawn on their thread -> the messages showing them
    from app.math_images import MATH

    math = MathBridge(w)
    math.ready.connect(chat.on_math_ready)
    MATH.on_ready = math.ready.emit

    # first run: the welcome page in front of the chat while no model is known (it wires its own signals)
    from app.widgets.welcome_page import install_welcome_page

    w.welcome = install_welcome_page(w, app.models)

    # local API server -> window
    app.api_server.failed.connect(lambda message: w.on_error(
        f"The local API server did not start: {message}", "user"))

    connect_tools(app)

    app.qapp.aboutToQuit.connect(app.shutdown)


def connect_tools(app: "Application") -> None:
    """The tools (app/tools_controller.py) and their part of the window (app/tools_ui.py): attachments,
    the python switch, approvals in tool blocks, citations opening the document viewer."""
    c, w, tools, ui = app.controller, app.window, app.tools, app.tools_ui
    bar = ui.bar
    # the tools' widgets -> controllers
    bar.files_chosen.connect(ui.attach)
    bar.remove_requested.connect(tools.remove)
    bar.python_toggled.connect(ui.set_python)
    bar.always_toggled.connect(ui.set_python_always)
    w.chat.tool_approval_answered.connect(c.answer_tool_approval)
    w.chat.citation_clicked.connect(ui.open_citation)
    # tools controller -> window (it lives on the GUI thread, so Qt queues what its attach thread emits)
    tools.attachments_changed.connect(ui.on_chat_changed)
    tools.switches_changed.connect(ui.on_chat_changed)
    tools.attach_failed.connect(lambda message: w.on_error(message, "user"))
    tools.busy_changed.connect(bar.set_busy)
    # chat controller -> the tools' widgets
    c.thread_changed.connect(ui.refresh)
    c.conversations_changed.connect(ui.refresh)
    c.tool_approval_needed.connect(lambda _turn: QApplication.alert(w))


def connect_models_panel(window: Any, panel: Any, dialog: Any) -> None:
    """The Models panel (made when Models… first opens) -> the controllers and settings."""
    from pathlib import Path

    models, chat, settings = window.models, window.controller, window.settings
    # The panel asks before loading a model it rates "will not fit": the controller does not ask twice.
    panel.load_requested.connect(lambda path: (models.request_load(Path(path), asked_if_wont_fit=True),
                                               dialog.accept()))
    panel.unload_requested.connect(chat.unload_model)
    panel.status_message.connect(lambda text: window.statusBar().showMessage(text, 8000))
    panel.models_dir_changed.connect(lambda path: settings.update(models_dir=str(path)))
    panel.context_length_changed.connect(lambda n: settings.update(context_length=int(n)))


def connect_servers_section(window: Any, section: Any, dialog: Any) -> None:
    """The Models dialog's "On servers you run" section (app/widgets/remote_models.py) -> the model
    controller (Use goes through the same load path as a folder: stages, cancel, model kept on failure)."""
    chat = window.controller

    def use(target: Any) -> None:
        chat.load_remote(target)
        dialog.accept()

    section.use_requested.connect(use)
    section.status_message.connect(lambda text: window.statusBar().showMessage(text, 10000))
