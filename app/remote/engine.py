"""`RemoteEngine`: the worker's `ChatEngine` for a model on a server (Chat Completions, streamed).

    engine = RemoteEngine.connect(target, api_key)        # lists the server's models; raises RemoteError
    for event in engine.chat(engine.new_session(), messages, params, should_stop):
        ...   # Delta events (with DecodeProgress for the live tokens/s), then exactly one Finished,
              # as engine.api.Engine streams them (no PrefillProgress: the server does not say)

`chat` never raises: every failure (offline mode, unreachable, 401, unknown model, context too
long, a dropped connection) ends the stream with Finished("error", error=<Lantern's words>) and an
`error_kind` that is the user's ("context_full" for a conversation too long, else "user"), never "bug".

Stop is prompt: the reply is read on its own thread and handed over through a queue, so the
worker's loop checks `should_stop` every POLL_S even while the server is silent (a long prefill),
and on Stop the socket is shut down, which ends the request on the server too.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx2

from app.remote.client import (auth_headers, error_for_exception, error_for_reported, error_for_status, join,
                               list_models, make_client)
from app.remote.conversation import request_body
from app.remote.errors import ModelNotFound, RemoteError, error_kind_of
from app.remote.policy import ensure_allowed
from app.remote.stream import ReplyAssembler, ServerReportedError, error_in
from app.remote.target import RemoteTarget
from engine.types import ChatEvent, DecodeProgress, Delta, Finished, GenerationParams, Message, ModelInfo, Usage

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often a silent stream checks Stop (and how late Stop can be, at most)."""

ProgressCallback = Callable[[str, float], None]

MIN_RATE_SPAN_S = 0.2
"""Tokens per second are reported only when the reply streamed over at least this long."""


def reasoning_unavailable_note(host: str) -> str:
    return (f"Reasoning was not available from {host}: the server sent only the answer "
            "(its reasoning parser may be off).")


class RemoteSession:
    """A conversation on a server. The server keeps its own prompt cache; nothing to hold here."""

    __slots__ = ("engine_id",)

    def __init__(self, engine_id: int) -> None:
        self.engine_id = engine_id


class _StreamCall:
    """One POST /chat/completions read on its own thread; items arrive on `items`:
    ("chunk", dict) | ("done", None) | ("eof", None) | ("status", (code, body)) | ("body", text) | ("exc", error)."""

    def __init__(self, client: httpx2.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client, self._url, self._body, self._headers = client, url, body, headers
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self._response: httpx2.Response | None = None
        self.thread = threading.Thread(target=self._run, name="remote-reply", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            with self._client.stream("POST", self._url, json=self._body, headers=self._headers) as response:
                with self._lock:
                    self._response = response
                if self._aborted.is_set():
                    return
                if response.status_code >= 400:
                    response.read()
                    self.items.put(("status", (response.status_code, response.text)))
                    return
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type != "text/event-stream":   # a server that ignored "stream": one JSON body
                    response.read()
                    self.items.put(("body", response.text))
                    return
                for event in httpx2.EventSource(response):
                    if self._aborted.is_set():
                        return
                    data = event.data.strip()
                    if not data:
                        continue
                    if data == "[DONE]":
                        self.items.put(("done", None))
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        log.warning("ignored a server-sent event that is not JSON: %.200s", data)
                        continue
                    self.items.put(("chunk", chunk))
                self.items.put(("eof", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side, which decides
            if not self._aborted.is_set():
                self.items.put(("exc", exc))

    def abort(self) -> None:
        """Stop reading and close the connection now (the server sees the client go away)."""
        if self._aborted.is_set():
            return
        self._aborted.set()
        with self._lock:
            response = self._response
        if response is None:
            return          # still connecting: the thread closes the connection as soon as it has one
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            try:
                # The plain socket's shutdown (also under TLS): it wakes the reading thread's recv at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class RemoteEngine:
    """A model served elsewhere, behind the same contract as engine.api.Engine."""

    def __init__(self, target: RemoteTarget, api_key: str | None = None, *, max_context: int = 0,
                 client: httpx2.Client | None = None, poll_s: float = POLL_S) -> None:
        self.target = target
        self._api_key = api_key
        self._client = client or make_client(target.trusted_cert_pem)
        self._poll_s = poll_s
        self._calls: set[_StreamCall] = set()
        self._closed = False
        self._server_reasons = False        # this server has sent reasoning before
        context = max_context or target.max_context
        self._info = ModelInfo(
            name=target.model, path=target.pseudo_path, layout="original", num_layers=0, num_experts=0,
            experts_per_token=0, params_total=0, params_active=0, bytes_on_disk=0, memory_needed_bytes=0,
            max_context=context, device="remote", backend=target.base_url, remote_host=target.host)

    @classmethod
    def connect(cls, target: RemoteTarget, api_key: str | None = None,
                progress: ProgressCallback | None = None) -> "RemoteEngine":
        """Check that the server answers and serves `target.model`; raises RemoteError (a user error)."""
        if progress is not None:
            progress("Connecting to the server", 0.1)
        models = list_models(target.base_url, api_key, target.trusted_cert_pem)
        match = next((m for m in models if m.id == target.model), None)
        if match is None and models:
            offered = ", ".join(m.id for m in models[:8]) + (" …" if len(models) > 8 else "")
            raise ModelNotFound(f"{target.host} does not serve “{target.model}” (it offers: {offered}).")
        if progress is not None:
            progress("Ready", 1.0)
        return cls(target, api_key, max_context=match.max_context if match is not None else 0)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def new_session(self) -> RemoteSession:
        return RemoteSession(id(self))

    def close(self) -> None:
        self._closed = True
        for call in list(self._calls):
            call.abort()
        self._client.close()

    def chat(self, session: Any, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        body = request_body(self.target.model, messages, params)
        return self._events(body, should_stop)

    # ---- the stream ------------------------------------------------------------------------------
    def _events(self, body: dict[str, Any], should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        base = self.target.base_url
        reply = ReplyAssembler()
        started = time.monotonic()
        timing = _Timing(started)
        if self._closed:
            yield Finished("error", error="This server connection has been closed; pick the model again.",
                           error_kind="user")
            return
        if should_stop():
            yield Finished("cancelled", timing.usage(reply))
            return
        try:
            ensure_allowed(base)
        except RemoteError as exc:
            yield failed(Usage(), exc)
            return
        call = _StreamCall(self._client, join(base, "chat/completions"), body, auth_headers(self._api_key))
        self._calls.add(call)
        call.start()
        try:
            while True:
                if should_stop():
                    call.abort()
                    yield Finished("cancelled", timing.usage(reply))
                    return
                try:
                    kind, value = call.items.get(timeout=self._poll_s)
                except queue.Empty:
                    continue
                if kind in ("chunk", "body"):
                    try:
                        events = self._feed(reply, kind, value)
                    except ServerReportedError as err:
                        yield failed(timing.usage(reply), error_for_reported(err, base, self.target.model))
                        return
                    for event in events:
                        timing.piece()
                        yield event
                        progress = timing.progress()
                        if progress is not None:
                            yield progress
                    if kind == "body":
                        break
                elif kind == "done":
                    break
                elif kind == "eof":
                    if reply.finish_reason is None:   # the stream ended without saying it was done
                        yield failed(timing.usage(reply),
                                     error_for_exception(ConnectionError("no end of stream"), base, mid_reply=True))
                        return
                    break
                elif kind == "status":
                    status, text = value
                    yield failed(timing.usage(reply),
                                 error_for_status(status, text, base, self.target.model, key_sent=bool(self._api_key)))
                    return
                else:  # "exc"
                    mid = reply.saw_output or reply.saw_reasoning
                    if mid and reply.finish_reason is not None:
                        break                          # everything came; only the goodbye was lost
                    log.info("remote reply failed: %r", value)
                    yield failed(timing.usage(reply), error_for_exception(value, base, mid_reply=mid))
                    return
        finally:
            call.abort()                               # no-op after a clean end; closes an abandoned stream
            self._calls.discard(call)
        note = None
        self._server_reasons = self._server_reasons or reply.saw_reasoning
        if not reply.saw_reasoning and reply.saw_output and not self._server_reasons:
            # gpt-oss always reasons first: no reasoning at all means the server does not pass it on
            # (once it has sent some, a reply without any is just a reply without any).
            note = reasoning_unavailable_note(self.target.host)
        yield Finished(reply.finish_reason or "stop", timing.usage(reply), note=note)

    @staticmethod
    def _feed(reply: ReplyAssembler, kind: str, value: Any) -> list[Delta]:
        if kind == "chunk":
            return reply.feed(value) if isinstance(value, dict) else []
        try:
            payload = json.loads(value)
        except ValueError:
            raise ServerReportedError(None, f"the server answered with something other than a reply: {value[:200]!r}")
        err = error_in(payload)
        if err is not None:
            raise err
        return reply.feed_body(payload) if isinstance(payload, dict) else []


def failed(usage: Usage, error: RemoteError) -> Finished:
    """A reply that ended with `error`: the user's to act on ("context_full" when it did not fit)."""
    return Finished("error", usage, str(error), error_kind=error_kind_of(error))


class _Timing:
    """Times seen from this computer (the network included): first piece, and pieces per second."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.first: float | None = None
        self.last: float | None = None
        self.pieces = 0

    def piece(self) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.pieces += 1

    def progress(self) -> DecodeProgress | None:
        """Pieces so far as tokens, timed from the first (for the live tokens/s), once the reply has
        streamed for MIN_RATE_SPAN_S (before that a burst of buffered pieces would read as a speed)."""
        if self.first is None or self.last is None or self.last - self.first < MIN_RATE_SPAN_S:
            return None
        return DecodeProgress(self.pieces, self.last - self.first)

    def usage(self, reply: ReplyAssembler) -> Usage:
        # Without a usage report (some servers send none), each streamed piece counts as one token.
        completion = reply.completion_tokens if reply.saw_usage else self.pieces
        ttft = (self.first - self.started) if self.first is not None else 0.0
        decode = 0.0
        # Only over a stretch long enough to mean something (a burst of buffered pieces does not).
        if self.first is not None and self.last is not None and self.last - self.first >= MIN_RATE_SPAN_S \
                and completion > 1:
            decode = (completion - 1) / (self.last - self.first)
        return Usage(prompt_tokens=reply.prompt_tokens, reused_tokens=reply.cached_tokens,
                     completion_tokens=completion, decode_tokens_per_s=decode, time_to_first_token_s=ttft)
