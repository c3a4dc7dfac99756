"""The engine's thread: a Qt-free `serve()` loop and the thin `EngineWorker` Qt shell around it.

One thread owns the engine (which is not thread-safe). The GUI puts typed requests on a queue and
receives typed events through one signal; Qt queues each emission to the GUI thread, so widgets
are only touched there. Cancel is a `threading.Event` the engine polls between prefill chunks and
tokens; a load is cancelled the same way, at its next stage.

A load first checks the new folder (its files' headers and the tokenizer, with `check`): a folder
that is not a usable model is refused while the model loaded before stays loaded. A model on a server
(`LoadModel.remote`) is connected to first and the model loaded before unloaded only once that worked. Streaming is
coalesced here and only here: at most one ChatUpdate per COALESCE_SECONDS, holding the text pieces
and the latest prefill/decode progress.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.messages import (
    ChatFinished,
    ChatStarted,
    ChatUpdate,
    Event,
    LiveStats,
    LoadFailed,
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
from engine.errors import EngineError, error_kind
from engine.types import ChatEngine, DecodeProgress, Delta, Finished, PrefillProgress

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.03
"""At most one ChatUpdate per this interval; the first piece of a reply and of each new channel (the
answer after the reasoning) go out at once, so a slow model's first words never wait."""


REMOTE_CANCEL_POLL_S = 0.05
"""While connecting to a server, how often the worker looks at Cancel."""


class EngineLike(ChatEngine, Protocol):
    """What the worker needs from `engine.Engine`: a ChatEngine it can close (tests pass a fake)."""

    def close(self) -> None: ...


ProgressCallback = Callable[[float, str], None]
EngineFactory = Callable[[LoadModel, ProgressCallback], EngineLike]
FolderCheck = Callable[[LoadModel], None]
"""Raises EngineError if the folder cannot be loaded; runs before the current model is unloaded."""


class LoadCancelled(Exception):
    """Raised from the load's progress callback once the user cancelled the load."""


def check_model_folder(request: LoadModel) -> None:
    """The real engine's check before unloading anything: every tensor's header (present, dtype,
    shape, inside its file: a truncated download fails here) and the tokenizer. Torch-free."""
    from engine.checkpoint import open_checkpoint
    from engine.tokenizer import load_tokenizer

    checkpoint = open_checkpoint(request.model_dir)
    load_tokenizer(checkpoint.location.repo_root)


def default_engine_factory(request: LoadModel, progress: ProgressCallback) -> EngineLike:
    """Load the real engine, or connect to the server a remote model runs on. Runs on the worker
    thread: this is where torch gets imported (not at all for a remote model)."""
    if request.remote is not None:
        from app.remote.factory import open_remote_engine

        return open_remote_engine(request.remote, progress)
    from app.engine_import import import_engine

    Engine = import_engine().Engine  # noqa: N806 - lazy: pulls in torch (without freezing the window)

    if request.cpu_threads > 0:
        torch = importlib.import_module("torch")  # already imported by engine.api at this point
        torch.set_num_threads(request.cpu_threads)
    return Engine.load(request.model_dir, device=request.device, max_context=request.max_context,
                       progress=progress, experts_on_cpu=request.experts_on_cpu)


class _Coalescer:
    """Collects one turn's text pieces and progress; sends a ChatUpdate at most every `interval`."""

    def __init__(self, request_id: int, emit: Callable[[Event], None], interval: float) -> None:
        self._request_id = request_id
        self._emit = emit
        self._interval = interval
        self._pieces: list[Delta] = []
        self._stats: LiveStats | None = None
        self._dirty = False
        self._last_flush = 0.0
        self._seen: tuple[str, str | None] | None = None
        self._prefill: PrefillProgress | None = None

    def add(self, delta: Delta) -> None:
        key = (delta.channel, getattr(delta, "recipient", None))
        last = self._pieces[-1] if self._pieces else None
        if last is not None and (last.channel, last.recipient) == key:
            self._pieces[-1] = Delta(delta.channel, last.text + delta.text, key[1])
        else:
            self._pieces.append(Delta(delta.channel, delta.text, key[1]))
        if key != self._seen:        # a new channel (or the reply's first piece) goes out at once
            self._seen = key
            self._last_flush = 0.0
        self._dirty = True
        self._maybe_flush()

    def prefill(self, p: PrefillProgress) -> None:
        self._prefill = p
        self._stats = LiveStats("prefill", p.reused + p.total, p.done, p.total, p.elapsed_s)
        self._dirty = True
        self._maybe_flush()

    def decode(self, d: DecodeProgress) -> None:
        p = self._prefill
        prompt, total, elapsed = (p.reused + p.total, p.total, p.elapsed_s) if p is not None else (0, 0, 0.0)
        self._stats = LiveStats("decode", prompt, total, total, elapsed, d.tokens, d.elapsed_s)
        self._dirty = True
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            self._emit(ChatUpdate(self._request_id, tuple(self._pieces), self._stats))
        self._pieces = []
        self._dirty = False
        self._last_flush = time.monotonic()


class _Server:
    """State of one `serve()` call: the engine, its session, and how to answer each request."""

    def __init__(self, emit: Callable[[Event], None], cancel_event: threading.Event,
                 engine_factory: EngineFactory, coalesce_seconds: float, check: FolderCheck | None,
                 cancel_load: threading.Event) -> None:
        self.emit = emit
        self.cancel_event = cancel_event
        self.cancel_load = cancel_load
        self.engine_factory = engine_factory
        self.check = check
        self.coalesce_seconds = coalesce_seconds
        self.engine: EngineLike | None = None
        self.session: Any = None
        self.session_conversation: str | None = None
        self.tools: Any = None            # app.tool_worker.WorkerTools, made by the first reply with tools
        self.approvals: Any = None        # app.tool_approvals.Approvals: python runs waiting for the user

    def close_engine(self) -> None:
        engine, self.engine, self.session, self.session_conversation = self.engine, None, None, None
        if engine is not None:
            engine.close()

    def load(self, request: LoadModel) -> None:
        """Check the folder, then unload the current model, then load the new one (stages reported)."""
        rid = request.request_id

        def progress(fraction: float | str, stage: str | float = "") -> None:
            if isinstance(fraction, str):  # engine.Engine.load calls progress(message, fraction)
                fraction, stage = stage, fraction
            if self.cancel_load.is_set():
                raise LoadCancelled()
            self.emit(LoadProgress(rid, float(fraction), str(stage)))

        if request.remote is not None:
            self._load_remote(request, progress)
            return
        try:
            progress(0.0, "Checking the model files")
            if self.check is not None:
                self.check(request)
            if self.cancel_load.is_set():
                raise LoadCancelled()
        except LoadCancelled:
            self.emit(LoadFailed(rid, "cancelled", "Loading was cancelled.", model_kept=self.engine is not None))
            return
        except Exception as error:  # noqa: BLE001 - refused before anything was unloaded
            self._load_failed(rid, error, model_kept=self.engine is not None)
            return
        if self.engine is not None:
            self.emit(LoadProgress(rid, 0.0, "Unloading the previous model"))
            self.close_engine()
        engine: EngineLike | None = None
        try:
            engine = self.engine_factory(request, progress)
            if self.cancel_load.is_set():
                raise LoadCancelled()
        except LoadCancelled:
            if engine is not None:
                engine.close()
            self.emit(LoadFailed(rid, "cancelled", "Loading was cancelled."))
            return
        except Exception as error:  # noqa: BLE001
            self._load_failed(rid, error, model_kept=False)
            return
        self.engine = engine
        self.emit(ModelReady(rid, engine.info))

    def _load_remote(self, request: LoadModel, progress: ProgressCallback) -> None:
        """A model on a server: connect first (the factory lists the server's models), and only once
        that worked unload the model loaded now. No weights come here, so nothing has to make room:
        a server that does not answer, refuses the key or does not serve the model (or a cancel while
        connecting) leaves the loaded model loaded.

        The connection is made on a thread of its own while this one watches for Cancel, so a cancel
        (or the app closing) does not wait for a silent server's timeout; an engine that arrives after
        that is closed."""
        rid = request.request_id
        kept = self.engine is not None
        outcome: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        abandoned = threading.Event()

        def connect() -> None:
            try:
                engine = self.engine_factory(request, progress)
            except BaseException as error:  # noqa: BLE001 - handed to the worker's thread below
                outcome.put(("error", error))
                return
            if abandoned.is_set():
                engine.close()
                return
            outcome.put(("engine", engine))

        threading.Thread(target=connect, name="remote-connect", daemon=True).start()
        while True:
            try:
                kind, value = outcome.get(timeout=REMOTE_CANCEL_POLL_S)
                break
            except queue.Empty:
                if self.cancel_load.is_set():
                    abandoned.set()
                    try:                                # it may have arrived just now
                        kind, value = outcome.get_nowait()
                    except queue.Empty:
                        kind, value = "error", LoadCancelled()
                    if kind == "engine":
                        value.close()
                        kind, value = "error", LoadCancelled()
                    break
        engine: EngineLike | None = value if kind == "engine" else None
        try:
            if engine is None:
                raise value
            if self.cancel_load.is_set():
                raise LoadCancelled()
        except LoadCancelled:
            if engine is not None:
                engine.close()
            self.emit(LoadFailed(rid, "cancelled", "Loading was cancelled.", model_kept=kept))
            return
        except Exception as error:  # noqa: BLE001
            self._load_failed(rid, error, model_kept=kept)
            return
        if self.engine is not None:
            self.emit(LoadProgress(rid, 1.0, "Unloading the previous model"))
            self.close_engine()
        self.engine = engine
        self.emit(ModelReady(rid, engine.info))

    def _load_failed(self, request_id: int, error: Exception, *, model_kept: bool) -> None:
        if isinstance(error, EngineError):
            log.warning("load %d failed: %s", request_id, error)
            self.emit(LoadFailed(request_id, "user", str(error), model_kept=model_kept))
        else:
            details = traceback.format_exc()
            log.error("bug while loading (request %d):\n%s", request_id, details)
            self.emit(LoadFailed(request_id, "bug", f"Internal error: {type(error).__name__}: {error}",
                                 model_kept=model_kept, details=details))

    def unload(self, request: UnloadModel) -> None:
        self.close_engine()
        self.emit(ModelUnloaded(request.request_id))

    def chat(self, request: StartChat) -> None:
        self.cancel_event.clear()
        self.emit(ChatStarted(request.request_id))
        if self.engine is None:
            message = "No model is loaded. Open one from Models first."
            self.emit(WorkerFailed(request.request_id, "user", message))
            self.emit(ChatFinished(request.request_id, "error", error=message, error_kind="user"))
            return
        # One live session, for the conversation that chatted last: its KV cache prefix is reused.
        if self.session is None or self.session_conversation != request.conversation_id:
            self.session = self.engine.new_session()
            self.session_conversation = request.conversation_id
        coalescer = _Coalescer(request.request_id, self.emit, self.coalesce_seconds)
        finished: Finished | None = None
        if request.tools is not None:   # tool calls are run and the reply continues (app/tool_worker.py)
            from app.tool_worker import tool_events

            events = tool_events(self, request, coalescer)
        else:
            events = self.engine.chat(self.session, request.messages, request.params,
                                      should_stop=self.cancel_event.is_set)
        for event in events:
            if isinstance(event, Delta):
                coalescer.add(event)
            elif isinstance(event, PrefillProgress):
                coalescer.prefill(event)
            elif isinstance(event, DecodeProgress):
                coalescer.decode(event)
            elif isinstance(event, Finished):
                finished = event
        coalescer.flush()
        if finished is None:  # the engine promises exactly one Finished; don't leave the GUI waiting
            log.error("engine.chat ended without a Finished event (request %d)", request.request_id)
            cancelled = self.cancel_event.is_set()
            finished = Finished("cancelled" if cancelled else "error",
                                error=None if cancelled else "The reply ended unexpectedly.",
                                error_kind=None if cancelled else "bug")
        if finished.reason == "error":
            kind = "bug" if finished.is_bug else "user"
            self.emit(WorkerFailed(request.request_id, kind, finished.error or "Generation failed."))
        self.emit(ChatFinished(request.request_id, finished.reason, finished.usage, finished.error,
                               finished.error_kind if finished.reason == "error" else None,
                               getattr(finished, "note", None)))


ENGINE_NICENESS = 5
"""The engine thread runs this much below the GUI thread (Linux niceness; "below normal" on Windows), so
that when the cores are busy the scheduler gives the window its turn first; on an idle machine it
changes nothing."""


def lower_thread_priority() -> bool:
    """Lower the calling thread's CPU priority (threads it starts inherit it). False where unsupported."""
    try:
        if sys.platform.startswith("linux"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENGINE_NICENESS)
            return True
        if sys.platform == "win32":
            import ctypes

            kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
            return bool(kernel32.SetThreadPriority(kernel32.GetCurrentThread(), -1))  # BELOW_NORMAL
    except (OSError, AttributeError) as error:
        log.debug("could not lower the engine thread's priority: %s", error)
    return False


def serve(requests: "queue.SimpleQueue[Request] | queue.Queue[Request]", emit: Callable[[Event], None],
          cancel_event: threading.Event, engine_factory: EngineFactory = default_engine_factory,
          *, coalesce_seconds: float = COALESCE_SECONDS, check: FolderCheck | None = None,
          cancel_load: threading.Event | None = None, lower_priority: bool = False,
          approvals: Any = None) -> None:
    """Answer requests until Shutdown. Never raises: every failure becomes a WorkerFailed event.

    EngineError (the user can act on it) -> WorkerFailed(kind="user"); any other exception is
    logged with its traceback -> WorkerFailed(kind="bug"). A failed StartChat also ends its turn
    with ChatFinished(reason="error"), so the GUI never waits forever; a failed LoadModel answers
    with LoadFailed (saying whether the previous model is still loaded).
    """
    server = _Server(emit, cancel_event, engine_factory, coalesce_seconds, check, cancel_load or threading.Event())
    server.approvals = approvals
    if lower_priority:
        lower_thread_priority()
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
            elif hasattr(request, "run_on_worker"):   # a local API server job (app/api_server.py)
                request.run_on_worker(server.engine)
            else:
                raise TypeError(f"unknown request {request!r}")
        except Exception as error:  # noqa: BLE001 - the thread must survive anything
            _report(emit, request, error)
    try:
        server.close_engine()
        if server.tools is not None:
            server.tools.close()
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
        emit(ChatFinished(request.request_id, "error", error=str(error), error_kind=error_kind(error)))


class EngineWorker(QObject):
    """Runs `serve()` on its own QThread. `event` carries every worker -> GUI message."""

    event = Signal(object)

    def __init__(self, engine_factory: EngineFactory = default_engine_factory,
                 check: FolderCheck | None = None) -> None:
        super().__init__()
        self._requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._cancel_load = threading.Event()
        from app.tool_approvals import Approvals

        self.approvals = Approvals()        # python runs waiting for the user (app/tool_approvals.py)
        self._factory = engine_factory
        if check is None:   # the real engine's check; a test factory brings its own (or none)
            check = check_model_folder if engine_factory is default_engine_factory else getattr(
                engine_factory, "check", None)
        self._check = check
        self._thread = QThread()
        self._thread.setObjectName("engine-worker")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    @Slot()
    def _run(self) -> None:
        serve(self._requests, self.event.emit, self._cancel, self._factory, check=self._check,
              cancel_load=self._cancel_load, lower_priority=True, approvals=self.approvals)

    def answer_approval(self, request_id: int, call_id: int, allow: bool) -> None:
        """The user's answer to a ToolApprovalNeeded (any thread)."""
        self.approvals.answer(request_id, call_id, allow)

    def submit(self, request: Request) -> None:
        if isinstance(request, LoadModel):
            self._cancel_load.clear()
        self._requests.put(request)

    def cancel_load(self) -> None:
        """Ask the load in progress to stop at its next stage (the model it replaced stays unloaded)."""
        self._cancel_load.set()

    def cancel(self) -> None:
        """Ask the current turn to stop at the next token (or prefill chunk); a tool waiting for
        approval is refused and running Python is interrupted."""
        self._cancel.set()
        self.approvals.cancel_all()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop generation, end serve() (which closes the engine) and join the thread."""
        if self._stopped:
            return True
        self._stopped = True
        self._cancel.set()
        self._cancel_load.set()
        self._requests.put(Shutdown())
        self._thread.quit()
        done = self._thread.wait(timeout_ms) if self._thread.isRunning() else True
        if not done:
            log.error("worker thread did not stop within %d ms", timeout_ms)
        return bool(done)
