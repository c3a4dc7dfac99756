"""Where generations run: one thread owns the model; requests queue up and stream events back.

The HTTP side (an asyncio event loop) never touches the model. It makes a `Job`, hands it to a
`ModelHost` (bounded queue: a full queue is answered 429), and reads the job's events. The model
thread runs `Job.run`, which calls `Engine.chat` and pushes each event onto the job's asyncio
queue. `Job.cancel()` (client gone, stop sequence seen) makes `should_stop` true; the engine checks
it between tokens, so the generation ends within one token.

`EngineHost` is the headless host (`python -m engine serve`): its own thread and a session pool.
The window provides another host that runs jobs on the worker thread that owns its model.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import ContextFull, EngineError
from engine.server.errors import APIError, context_length_exceeded, no_model, queue_full
from engine.server.pool import SessionPool
from engine.types import ChatEvent, Delta, Finished, GenerationParams, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The job could not run: the HTTP side answers (or ends the stream) with this error."""

    error: APIError


class Job:
    """One generation request, made on the event loop, run on the model thread."""

    def __init__(self, messages: Sequence[Message], params: GenerationParams,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.messages = list(messages)
        self.params = params
        self.loop = loop or asyncio.get_running_loop()
        self.events: asyncio.Queue[ChatEvent | JobFailed] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.started = threading.Event()
        self.tokens_after_cancel = 0      # deltas the engine still produced once cancelled (tests)

    # -- event-loop side ---------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    async def __aiter__(self) -> AsyncIterator[ChatEvent | JobFailed]:
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, (Finished, JobFailed)):
                return

    # -- model-thread side -------------------------------------------------------------------------
    def should_stop(self) -> bool:
        return self._cancelled.is_set()

    def _put(self, event: ChatEvent | JobFailed) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:   # the event loop is gone (server shutting down)
            self.cancel()

    def run(self, engine: Any, pool: SessionPool) -> None:
        self.started.set()
        if self.cancelled:
            self._put(Finished("cancelled"))
            return
        try:
            session = pool.acquire_for(self.messages, self.params)
            events = engine.chat(session, self.messages, self.params, should_stop=self.should_stop)
            for event in events:
                if not isinstance(event, (Delta, Finished)):
                    continue          # progress events (prefill, decode) are the window's, not the API's
                if self.cancelled and not isinstance(event, Finished):
                    self.tokens_after_cancel += 1
                self._put(event)
        except ContextFull as exc:
            self._put(JobFailed(context_length_exceeded(exc.limit_tokens, exc.used_tokens)))
        except EngineError as exc:
            self._put(JobFailed(APIError(500, str(exc), type="server_error", code="engine_error")))
        except Exception as exc:  # noqa: BLE001 - the request must get an answer
            log.exception("API generation failed")
            self._put(JobFailed(APIError(500, f"Internal error: {type(exc).__name__}: {exc}", type="server_error")))


class ModelHost(Protocol):
    """What the HTTP app needs: the model being served (None: none loaded) and a way to run jobs."""

    def current(self) -> Any | None: ...

    def submit(self, job: Job) -> None: ...


class EngineHost:
    """Runs jobs one at a time on a thread of its own that owns `engine`; at most `max_queue` wait."""

    def __init__(self, engine: Any, *, sessions: int = 1, max_queue: int = 8) -> None:
        self.engine = engine
        self.pool = SessionPool(engine, sessions)
        self.max_queue = max_queue
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._serve, name="lantern-api-model", daemon=True)
        self._thread.start()

    def current(self) -> Any | None:
        return self.engine

    def submit(self, job: Job) -> None:
        if self.engine is None:
            raise no_model()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise queue_full(self.max_queue) from None

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.run(self.engine, self.pool)

    def close(self) -> None:
        """Stop the model thread after the job in progress (waiting jobs are cancelled)."""
        while True:
            try:
                pending = self._jobs.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                pending.cancel()
                pending.run(self.engine, self.pool)   # answers it with "cancelled" at once
        self._jobs.put(None)
        self._thread.join(timeout=30)
