"""Composition root: settings, history store, engine worker, controller and window, and shutdown order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication

from app.chat_controller import ChatController
from app.paths import config_dir, history_db_path
from app.settings import SettingsStore
from app.widgets.main_window import MainWindow
from app.worker import EngineFactory, EngineWorker, default_engine_factory

log = logging.getLogger(__name__)


class Application:
    """Builds the parts in order and tears them down in reverse (cancel, Shutdown, join)."""

    def __init__(self, qapp: QApplication, *, store: Any = None, settings: SettingsStore | None = None,
                 engine_factory: EngineFactory = default_engine_factory) -> None:
        self.qapp = qapp
        self.settings = settings or SettingsStore(config_dir() / "settings.json")
        if store is None:
            from app.history.store import HistoryStore

            db = history_db_path()
            db.parent.mkdir(parents=True, exist_ok=True)
            store = HistoryStore(db)
        self.store = store
        self.worker = EngineWorker(engine_factory)
        self.controller = ChatController(self.store, self.settings, self.worker)
        self.worker.event.connect(self.controller.on_event)
        self.window = MainWindow(self.controller, self.settings)
        qapp.aboutToQuit.connect(self.shutdown)
        self._shut = False
        self.worker_joined = True

    def start(self, *, autoload: bool = True) -> None:
        """Show the window first, then start the worker (torch is imported there, later)."""
        self.window.show()
        self.worker.start()
        last = self.settings.settings.last_model
        if autoload and last and Path(last).is_dir():
            log.info("loading the last model: %s", last)
            self.controller.load_model(Path(last))

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        log.info("shutting down")
        self.controller.shutdown()
        # A model still loading cannot be interrupted; main() then ends the process without waiting.
        self.worker_joined = self.worker.shutdown()
        self.window.shutdown()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
