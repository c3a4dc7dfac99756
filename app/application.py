"""Composition root: settings, history store, engine worker, the one model manager, the controllers
and the window (with the tools' part of it), built in order here and closed in reverse; their signals
are connected in app/wiring.py.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from app.chat_controller import ChatController
from app.gui_gc import install_gui_gc
from app.model_controller import ModelController
from app.models import network
from app.models.manager import ModelManager
from app.paths import config_dir, default_models_dir, history_db_path
from app.remote.target import parse_remote_model_path
from app.settings import SettingsStore
from app.widgets.main_window import MainWindow
from app.wiring import connect
from app.worker import EngineFactory, EngineWorker, default_engine_factory

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001
"""How long the GUI thread may wait for the interpreter lock while the engine thread runs Python
between its torch calls (CPython's default is 5 ms, paid again for every Python slot Qt calls)."""


class Application:
    """Builds the parts in order and tears them down in reverse (cancel, Shutdown, join).

    `models` is the model manager (downloads, the models folder): the only one, built here, closed in
    `shutdown()`. `model_controller` decides loading; `controller` is the chat's.
    """

    def __init__(self, qapp: QApplication, *, store: Any = None, settings: SettingsStore | None = None,
                 engine_factory: EngineFactory = default_engine_factory) -> None:
        self.qapp = qapp
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # gpt-oss's tokenizer, built while the window is being made: tiktoken holds the interpreter lock
        # for ~0.1 s to build it, which would otherwise freeze the shown window during the first load.
        self._tokenizer = threading.Thread(target=_build_tokenizer, name="tokenizer", daemon=True)
        self._tokenizer.start()
        # Cycles holding Qt objects must never be collected on the engine or download threads.
        self.gui_gc = install_gui_gc(qapp)
        self.settings = settings or SettingsStore(config_dir() / "settings.json")
        # First, before anything could import huggingface_hub (it reads HF_HUB_OFFLINE when imported).
        network.set_offline(self.settings.settings.offline)
        if store is None:
            from app.history.store import HistoryStore

            db = history_db_path()
            db.parent.mkdir(parents=True, exist_ok=True)
            store = HistoryStore(db)
        self.store = store
        self.worker = EngineWorker(engine_factory)
        self.models = self._make_model_manager()
        self.model_controller = ModelController(self.settings, self.worker, self.models)
        self.controller = ChatController(self.store, self.settings, self.worker, self.model_controller)
        self.window = MainWindow(self.controller, self.model_controller, self.settings, self.models)
        from app.tools_controller import ToolsController   # attachments, the python switch
        from app.tools_ui import ToolsUi

        self.tools = ToolsController(self.store)
        self.controller.tools = self.tools
        self.tools_ui = ToolsUi(self.window, self.controller, self.tools)
        from app.api_server import LocalApiServer

        self.api_server = LocalApiServer(self.settings, self.controller, self.worker, self.window.statusBar())
        self._shut = False
        self.worker_joined = True
        connect(self)
        self.window.apply_appearance()
        self.window.refresh_sidebar()
        self.window.on_model_changed()
        self.window.on_chat_settings_changed()

    def _make_model_manager(self) -> ModelManager | None:
        """The model manager, made at start so a download queue left by the last run can resume.
        None if the models folder cannot be used (the window then offers the folder picker)."""
        s = self.settings.settings
        models_dir = Path(s.models_dir) if s.models_dir else default_models_dir()
        try:
            return ModelManager(models_dir, offline=s.offline, context_length=s.context_length)
        except Exception as error:  # noqa: BLE001 - a broken models folder must not stop the app
            log.warning("model manager for %s failed: %s", models_dir, error)
            return None

    def on_setting_changed(self, key: str) -> None:
        s = self.settings.settings
        if key == "offline":
            network.set_offline(s.offline)
            if self.models is not None:
                self.models.offline = s.offline   # running downloads stop (kept queued) / resume
        elif key == "context_length" and self.models is not None:
            self.models.context_length = s.context_length

    def start(self, *, autoload: bool = True, resume_downloads: bool = True) -> None:
        """Show the window first, then start the worker (torch is imported there, later); resume the
        downloads the last run left queued (unless offline), reopen a chat whose reply a crash cut off,
        and load the last model (if `autoload`)."""
        self._tokenizer.join(5.0)       # done before anything is visible (see __init__)
        self.window.show()
        self.worker.start()
        from app.render import warm_up

        self.window.background.run(warm_up, lambda _: None)   # first code blocks must not compile lexers here
        self.api_server.apply()   # off unless Settings → Local API server is on
        if resume_downloads and self.models is not None and not network.is_offline():
            try:
                resumed = self.models.resume_pending()
            except Exception as error:  # noqa: BLE001 - a broken queue file must not stop the app
                log.warning("could not resume the downloads of the last run: %s", error)
            else:
                if resumed:
                    log.info("resumed downloads: %s", ", ".join(resumed))
        cut_off = self.controller.recovered_conversation()
        if cut_off is not None:
            self.controller.open_conversation(cut_off)
            self.window.chat.show_banner("Lantern closed unexpectedly last time while writing a reply. The reply "
                                         "is kept as far as it got and marked “cut off”; Regenerate (Ctrl+R) "
                                         "writes a new one.", tag="crash", kind="info")
        last = self.settings.settings.last_model
        if autoload and last and parse_remote_model_path(last) is not None:
            self._autoload_remote(last)   # the last model ran on a server the user added
        elif autoload and last and Path(last).is_dir():
            log.info("loading the last model: %s", last)
            self.model_controller.request_load(Path(last), interactive=False)

    def _autoload_remote(self, last: str) -> None:
        """Use the remote model used last again, if its server is still in the list (the worker then
        connects; offline mode refuses a server elsewhere with a notice, like any failed load)."""
        from app.remote.registry import target_for

        target = target_for(last)
        if target is None:
            log.info("the last model was on a server that was removed: %s", last)
            return
        log.info("using the last model again: %s on %s", target.model, target.host)
        self.model_controller.load_remote(target)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        log.info("shutting down")
        self.controller.shutdown()
        self.model_controller.shutdown()
        self.api_server.shutdown()
        # A model still loading cannot be interrupted; main() then ends the process without waiting.
        self.worker_joined = self.worker.shutdown()
        self.window.shutdown()
        from app.math_images import MATH

        MATH.on_ready = None
        if self.models is not None:
            self.models.unsubscribe(self._manager_listener)
            self.models.close()   # downloads stay queued and resume next time
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        self.settings.flush()

    _manager_listener: Any = None


def _build_tokenizer() -> None:
    """The bundled gpt-oss tokenizer, into engine.tokenizer's cache (a model's own identical
    tokenizer.json is then read from it). Torch-free."""
    try:
        from engine.tokenizer import load_tokenizer

        load_tokenizer()
    except Exception as error:  # noqa: BLE001 - the load reports a missing tokenizer itself
        log.warning("could not build the tokenizer ahead: %s", error)
