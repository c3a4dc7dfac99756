"""The window's "Local API server": serves the model the window has loaded, through its worker thread.

Off by default (Settings → Local API server). When on, an HTTP server (engine/server, on a thread of
its own) listens on 127.0.0.1 — or on every interface with "allow other devices on my network" —
and every request needs the API key shown in Settings (generated the first time). Generations do
not get a model of their own: each one is a request on the engine worker's queue, run by the thread
that owns the window's model, one at a time with the window's own chats (one model in memory).
The status bar shows the address while the server runs.

No torch here: the HTTP side validates requests with the model's tokenizer only; the engine is
touched on the worker thread alone.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QStatusBar

from app.paths import data_dir
from engine.types import GenerationParams, Message, ModelInfo

log = logging.getLogger(__name__)

MAX_WAITING = 4                 # API requests that may wait for the worker at once (more: 429)
LAN_HOST = "0.0.0.0"
LOCAL_HOST = "127.0.0.1"


def new_api_key() -> str:
    return "lantern-" + secrets.token_urlsafe(24)


@dataclass
class ModelView:
    """What the HTTP side may use of the loaded model: its description, tokenizer and prompt rendering."""

    info: ModelInfo
    tokenizer: Any

    def render(self, messages: list[Message], params: GenerationParams) -> list[int]:
        from engine.harmony import render_conversation

        return render_conversation(messages, params, self.tokenizer)


class _ApiJobRequest:
    """A worker request that runs one API job on the worker thread (app/worker.py calls run_on_worker)."""

    def __init__(self, job: Any, host: "WorkerHost") -> None:
        self.job = job
        self.host = host
        self.request_id = None

    def run_on_worker(self, engine: Any) -> None:
        try:
            if engine is None:
                from engine.server.errors import no_model
                from engine.server.host import JobFailed

                self.job._put(JobFailed(no_model()))
                return
            self.job.run(engine, self.host.pool_for(engine))
        finally:
            self.host.job_done()


class WorkerHost:
    """engine.server's ModelHost on top of the window's EngineWorker."""

    def __init__(self, worker: Any, max_waiting: int = MAX_WAITING) -> None:
        self.worker = worker
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._pending = 0
        self._view: ModelView | None = None
        self._info: ModelInfo | None = None
        self._pool: Any = None
        self._pool_engine: Any = None

    def set_model(self, info: ModelInfo | None) -> None:
        """Called on the GUI thread when a model is loaded or unloaded. A model on a server the user added
        (app/remote) is not served: the API serves a model on this computer only (not a relay to a server)."""
        if info is not None and info.remote_host:
            info = None
        with self._lock:
            self._info = info
            self._view = None

    def current(self) -> ModelView | None:
        with self._lock:
            info, view = self._info, self._view
        if info is None:
            return None
        if view is None or view.info is not info:
            from engine.tokenizer import load_tokenizer

            view = ModelView(info, load_tokenizer(info.path if Path(info.path).is_dir() else None))
            with self._lock:
                if self._info is info:
                    self._view = view
        return view

    def submit(self, job: Any) -> None:
        from engine.server.errors import no_model, queue_full

        if self.current() is None:
            raise no_model()
        with self._lock:
            if self._pending >= self.max_waiting:
                raise queue_full(self._pending)
            self._pending += 1
        self.worker.submit(_ApiJobRequest(job, self))

    def job_done(self) -> None:
        with self._lock:
            self._pending -= 1

    def pool_for(self, engine: Any) -> Any:
        """One session (the engine's shared KV cache) per loaded engine; worker thread only."""
        from engine.server.pool import SessionPool

        if self._pool_engine is not engine:
            self._pool, self._pool_engine = SessionPool(engine, 1), engine
        return self._pool


class LocalApiServer(QObject):
    """Starts and stops the server as the settings say; shows the address in the status bar."""

    address_changed = Signal(str)   # "http://127.0.0.1:8177/v1", or "" when off
    failed = Signal(str)            # a message for the user (port in use, ...)

    def __init__(self, settings: Any, controller: Any, worker: Any, status_bar: QStatusBar | None = None,
                 store_path: Path | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.controller = controller
        self.host = WorkerHost(worker)
        self.store_path = store_path or data_dir() / "api-responses.sqlite3"
        self._server: Any = None
        self._store: Any = None
        self.address = ""
        self.label = QLabel("")
        self.label.setAccessibleName("Local API server")
        self.label.setContentsMargins(6, 0, 6, 0)
        self.label.setVisible(False)
        if status_bar is not None:
            status_bar.addPermanentWidget(self.label)
        settings.changed.connect(self._on_setting_changed)
        controller.model_changed.connect(self._on_model_changed)
        self._on_model_changed()

    # -- reacting to the window ---------------------------------------------------------------------
    def _on_model_changed(self) -> None:
        self.host.set_model(getattr(self.controller, "model", None))

    def _on_setting_changed(self, key: str) -> None:
        if key == "api_server":
            self.apply()
        elif key in ("api_server_lan", "api_server_port", "api_key") and self._server is not None:
            self.stop()
            self.apply()

    def apply(self) -> None:
        """Run the server if the setting is on, else make sure it is stopped."""
        if self.settings.settings.api_server:
            self.start()
        else:
            self.stop()

    # -- the server ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._server is not None:
            return
        from engine.server.app import ServerConfig, create_app
        from engine.server.serve import ApiServer, ServerError
        from engine.server.store import ResponseStore

        s = self.settings.settings
        if not s.api_key:
            self.settings.update(api_key=new_api_key())   # shown (and copyable) in Settings
            s = self.settings.settings
        host = LAN_HOST if s.api_server_lan else LOCAL_HOST
        try:
            self._store = ResponseStore(self.store_path)
            app = create_app(self.host, ServerConfig(api_key=s.api_key, store=self._store))
            self._server = ApiServer(app, host, s.api_server_port)
            self._server.start()
        except (ServerError, OSError) as exc:
            log.warning("local API server did not start: %s", exc)
            self._server = None
            self._close_store()
            self.failed.emit(str(exc))
            self._show("")
            return
        url = f"http://{LOCAL_HOST if host == LOCAL_HOST else self._lan_address()}:{self._server.port}/v1"
        log.info("local API server at %s (listening on %s)", url, host)
        self._show(url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._close_store()
        self._show("")

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _show(self, url: str) -> None:
        self.address = url
        self.label.setText(f"API: {url}" if url else "")
        self.label.setToolTip("Local API server (OpenAI-compatible); the key is in Settings" if url else "")
        self.label.setVisible(bool(url))
        self.address_changed.emit(url)

    @staticmethod
    def _lan_address() -> str:
        """How other devices may address this machine (its host name; no network lookup)."""
        import socket

        return socket.gethostname() or LAN_HOST

    def shutdown(self) -> None:
        self.stop()
