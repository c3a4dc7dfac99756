"""Composition root: settings, history store, engine worker, controller and window, and shutdown order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from app.chat_controller import ChatController
from app.gui_gc import install_gui_gc
from app.models import network
from app.paths import config_dir, default_models_dir, history_db_path
from app.settings import SettingsStore
from app.widgets.main_window import MainWindow
from app.worker import EngineFactory, EngineWorker, default_engine_factory

log = logging.getLogger(__name__)


class Application:
    """Builds the parts in order and tears them down in reverse (cancel, Shutdown, join)."""

    def __init__(self, qapp: QApplication, *, store: Any = None, settings: SettingsStore | None = None,
                 engine_factory: EngineFactory = default_engine_factory) -> None:
        self.qapp = qapp
        # Cycles holding Qt objects must never be collected on the engine or download threads.
        self.gui_gc = install_gui_gc(qapp)
        self.settings = settings or SettingsStore(config_dir() / "settings.json")
        # First, before anything could import huggingface_hub (it reads HF_HUB_OFFLINE when imported).
        network.set_offline(self.settings.settings.offline)
        self.settings.changed.connect(self._on_setting_changed)
        if store is None:
            from app.history.store import HistoryStore

            db = history_db_path()
            db.parent.mkdir(parents=True, exist_ok=True)
            store = HistoryStore(db)
        self.store = store
        self.worker = EngineWorker(engine_factory)
        self.controller = ChatController(self.store, self.settings, self.worker)
        self.worker.event.connect(self.controller.on_event)
        self.models = self._make_model_manager()
        self.window = MainWindow(self.controller, self.settings, self.models)
        qapp.aboutToQuit.connect(self.shutdown)
        self._shut = False
        self.worker_joined = True

    def _make_model_manager(self) -> Any:
        """The model manager, made at start so a download queue left by the last run can resume."""
        try:
            from app.models.manager import ModelManager
        except ImportError as error:  # a build without the models package: folder picker only
            log.info("model manager not available (%s)", error)
            return None
        s = self.settings.settings
        models_dir = Path(s.models_dir) if s.models_dir else default_models_dir()
        try:
            return ModelManager(models_dir, offline=s.offline, context_length=s.context_length)
        except Exception as error:  # noqa: BLE001 - a broken models folder must not stop the app
            log.warning("model manager for %s failed: %s; made when Models opens", models_dir, error)
            return None

    def _on_setting_changed(self, key: str) -> None:
        if key == "offline":
            network.set_offline(self.settings.settings.offline)

    def start(self, *, autoload: bool = True, resume_downloads: bool = True) -> None:
        """Show the window first, then start the worker (torch is imported there, later); resume the
        downloads the last run left queued (unless offline) and load the last model (if `autoload`)."""
        self.window.show()
        self.worker.start()
        if resume_downloads and self.models is not None and not network.is_offline():
            try:
                resumed = self.models.resume_pending()
            except Exception as error:  # noqa: BLE001 - a broken queue file must not stop the app
                log.warning("could not resume the downloads of the last run: %s", error)
            else:
                if resumed:
                    log.info("resumed downloads: %s", ", ".join(resumed))
        last = self.settings.settings.last_model
        if autoload and last:
            from app.widgets.remote_hooks import autoload_remote

            if autoload_remote(self.window, last):   # the last model ran on a server the user added
                return
        if autoload and last and Path(last).is_dir():
            log.info("loading the last model: %s", last)
            self.window.request_load(Path(last), interactive=False)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        log.info("shutting down")
        self.controller.shutdown()
        # A model still loading cannot be interrupted; main() then ends the process without waiting.
        self.worker_joined = self.worker.shutdown()
        self.window.shutdown()  # also stops the model manager's downloads (they stay queued)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
