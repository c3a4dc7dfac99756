"""The engine's thread: a Qt-free `serve()` loop and the thin `EngineWorker` Qt shell around it.

One thread owns the engine (which is not thread-safe). The GUI puts typed requests on a queue and
receives typed events through one signal; Qt queues each emission to the GUI thread, so widgets
are only touched there. Cancel is a `threading.Event` the engine polls between tokens.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
import traceback
from typing import Any, Callable, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.messages import (
    ChatDelta,
    ChatFinished,
    ChatStarted,
    Event,
    LoadModel,
    LoadProgress,
    ModelReady,
    ModelUnloaded,
    Request,
    Shutdown,
    StartChat,
    UnloadModel,
    WorkerFailed,
)
from engine.errors import EngineError
from engine.types import ChatEngine, Delta, Finished

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.03
"""At most one ChatDelta per channel per this interval (a change of channel or recipient flushes at
once, and the first piece of the new channel goes out at once too, as the first piece of a reply does)."""


class EngineLike(ChatEngine, Protocol):
    """What the worker needs from `engine.Engine`: a ChatEngine it can close (tests pass a fake)."""

    def close(self) -> None: ...


ProgressCallback = Callable[[float, str], None]
EngineFactory = Callable[[LoadModel, ProgressCallback], EngineLike]


def default_engine_factory(request: LoadModel, progress: ProgressCallback) -> EngineLike:
    """Load the real engine, or connect to the server a remote model runs on. Runs on the worker
    thread: this is where torch gets imported (not at all for a remote model)."""
    if request.remote is not None:
        from app.remote.factory import open_remote_engine

        return open_remote_engine(request.remote, progress)
    from engine import Engine  # lazy: pulls in torch

    if request.cpu_threads > 0:
        torch = importlib.import_module("torch")  # already imported by engine.api at this point
        torch.set_num_threads(request.cpu_threads)
    return Engine.load(request.model_dir, device=request.device, max_context=request.max_context,
                       progress=progress)


class _Coalescer:
    """Buffers deltas of one turn; flushes on channel change or once the interval has passed."""

    def __init__(self, request_id: int, emit: Callable[[Event], None], interval: float) -> None:
        self._request_id = request_id
        self._emit = emit
        self._interval = interval
        self._channel: str | None = None
        self._recipient: str | None = None
        self._parts: list[str] = []
        self._last_flush = 0.0

    def add(self, delta: Delta) -> None:
        recipient = getattr(delta, "recipient", None)
        if self._channel is not None and (delta.channel, recipient) != (self._channel, self._recipient):
            self.flush()
            # Not held back: the answer's first words (or a slow model's next token) could otherwise
            # wait in this buffer until the next token arrives.
            self._last_flush = 0.0
        self._channel, self._recipient = delta.channel, recipient
        self._parts.append(delta.text)
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        if self._parts and self._channel is not None:
            self._emit(ChatDelta(self._request_id, self._channel, "".join(self._parts), self._recipient))
        self._parts.clear()
        self._last_flush = time.monotonic()


class _Server:
    """State of one `serve()` call: the engine, its session, and how to answer each request."""

    def __init__(self, emit: Callable[[Event], None], cancel_event: threading.Event,
                 engine_factory: EngineFactory, coalesce_seconds: float) -> None:
        self.emit = emit
        self.cancel_event = cancel_event
        self.engine_factory = engine_factory
        self.coalesce_seconds = coalesce_seconds
        self.engine: EngineLike | None = None
        self.session: Any = None
        self.session_conversation: str | None = None

    def close_engine(self) -> None:
        engine, self.engine, self.session, self.session_conversation = self.engine, None, None, None
        if engine is not None:
            engine.close()

    def load(self, request: LoadModel) -> None:
        self.close_engine()

        def progress(fraction: float | str, stage: str | float = "") -> None:
            if isinstance(fraction, str):  # engine.Engine.load calls progress(message, fraction)
                fraction, stage = stage, fraction
            self.emit(LoadProgress(request.request_id, float(fraction), str(stage)))

        self.engine = self.engine_factory(request, progress)
        self.emit(ModelReady(request.request_id, self.engine.info))

    def unload(self, request: UnloadModel) -> None:
        self.close_engine()
        self.emit(ModelUnloaded(request.request_id))

    def chat(self, request: StartChat) -> None:
        self.cancel_event.clear()
        self.emit(ChatStarted(request.request_id))
        if self.engine is None:
            message = "No model is loaded. Open one from Models first."
            self.emit(WorkerFailed(request.request_id, "user", message))
            self.emit(ChatFinished(request.request_id, "error", error=message))
            return
        # One live session, for the conversation that chatted last: its KV cache prefix is reused.
        if self.session is None or self.session_conversation != request.conversation_id:
            self.session = self.engine.new_session()
            self.session_conversation = request.conversation_id
        coalescer = _Coalescer(request.request_id, self.emit, self.coalesce_seconds)
        finished: Finished | None = None
        for event in self.engine.chat(self.session, request.messages, request.params,
                                      should_stop=self.cancel_event.is_set):
            if isinstance(event, Delta):
                coalescer.add(event)
            elif isinstance(event, Finished):
                finished = event
        coalescer.flush()
        if finished is None:  # the engine promises exactly one Finished; don't leave the GUI waiting
            log.error("engine.chat ended without a Finished event (request %d)", request.request_id)
            finished = Finished("cancelled" if self.cancel_event.is_set() else "error",
                                error=None if self.cancel_event.is_set() else "The reply ended unexpectedly.")
        if finished.reason == "error":
            self.emit(WorkerFailed(request.request_id, "user", finished.error or "Generation failed."))
        self.emit(ChatFinished(request.request_id, finished.reason, finished.usage, finished.error,
                               getattr(finished, "note", None)))


def serve(requests: "queue.SimpleQueue[Request] | queue.Queue[Request]", emit: Callable[[Event], None],
          cancel_event: threading.Event, engine_factory: EngineFactory = default_engine_factory,
          *, coalesce_seconds: float = COALESCE_SECONDS) -> None:
    """Answer requests until Shutdown. Never raises: every failure becomes a WorkerFailed event.

    EngineError (the user can act on it) -> WorkerFailed(kind="user"); any other exception is
    logged with its traceback -> WorkerFailed(kind="bug"). A failed StartChat also ends its turn
    with ChatFinished(reason="error"), so the GUI never waits forever.
    """
    server = _Server(emit, cancel_event, engine_factory, coalesce_seconds)
    while True:
        request = requests.get()
        if isinstance(request, Shutdown):
            break
        try:
            if isinstance(request, LoadModel):
                server.load(request)
            elif isinstance(request, UnloadModel):
                server.unload(request)
            elif isinstance(request, StartChat):
                server.chat(request)
            else:
                raise TypeError(f"unknown request {request!r}")
        except Exception as error:  # noqa: BLE001 - the thread must survive anything
            _report(emit, request, error)
    try:
        server.close_engine()
    except Exception as error:  # noqa: BLE001
        _report(emit, None, error)
    log.info("worker stopped")


def _report(emit: Callable[[Event], None], request: Request | None, error: Exception) -> None:
    request_id = getattr(request, "request_id", None)
    if isinstance(error, EngineError):
        log.warning("request %s failed: %s", request_id, error)
        emit(WorkerFailed(request_id, "user", str(error)))
    else:
        details = traceback.format_exc()
        log.error("bug while handling %r:\n%s", request, details)
        emit(WorkerFailed(request_id, "bug", f"Internal error: {type(error).__name__}: {error}", details))
    if isinstance(request, StartChat):
        emit(ChatFinished(request.request_id, "error", error=str(error)))


class EngineWorker(QObject):
    """Runs `serve()` on its own QThread. `event` carries every worker -> GUI message."""

    event = Signal(object)

    def __init__(self, engine_factory: EngineFactory = default_engine_factory) -> None:
        super().__init__()
        self._requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._factory = engine_factory
        self._thread = QThread()
        self._thread.setObjectName("engine-worker")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    @Slot()
    def _run(self) -> None:
        serve(self._requests, self.event.emit, self._cancel, self._factory)

    def submit(self, request: Request) -> None:
        self._requests.put(request)

    def cancel(self) -> None:
        """Ask the current turn to stop at the next token (or prefill chunk)."""
        self._cancel.set()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop generation, end serve() (which closes the engine) and join the thread."""
        if self._stopped:
            return True
        self._stopped = True
        self._cancel.set()
        self._requests.put(Shutdown())
        self._thread.quit()
        done = self._thread.wait(timeout_ms) if self._thread.isRunning() else True
        if not done:
            log.error("worker thread did not stop within %d ms", timeout_ms)
        return bool(done)
