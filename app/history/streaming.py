"""Saving a reply while it streams, so that a crash or a kill loses at most the last second of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from app.history.errors import NotFound
from app.history.models import StoredMessage, ToolRound
from app.history.store import HistoryStore

log = logging.getLogger(__name__)

# engine.types.Finished.reason -> the stored status
_STATUS_FOR_REASON = {"stop": "done", "length": "done", "tool_call": "done", "cancelled": "stopped", "error": "error"}


class _DeltaLike(Protocol):
    channel: str | None
    text: str


class _FinishedLike(Protocol):
    reason: str
    usage: Any
    error: str | None


class StreamingSaver:
    """Accumulates one assistant reply and writes it to the store at most every ``interval_s``.

    The GUI calls ``add_delta`` for every engine Delta (analysis-channel text goes to
    ``reasoning``, a tool call's arguments (a delta with a recipient) to ``tool_calls``, every
    other channel to ``content``), ``poll`` from a timer if it wants the bound to hold while
    deltas pause, and ``finish``/``finish_from`` once. For the tools Lantern runs,
    ``record_tool_call``/``set_tool_result`` give each call its result and ``set_browser_pages``
    keeps the browser's pages (what the citations point at). Each write is one
    committed transaction, so a killed process keeps everything up to the last write; on the
    next open the reply is found "streaming" and becomes "stopped" (HistoryStore.recovered_ids).
    """

    def __init__(
        self,
        store: HistoryStore,
        message_id: int,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        message = store.get_message(message_id)
        self._store = store
        self.message_id = message_id
        self._interval = interval_s
        self._clock = clock
        self._content = [message.content]
        self._reasoning = [message.reasoning]
        self._tool_calls: list[list[str]] = [[r, a] for r, a in message.tool_calls]
        self._tool_recipient: str | None = None   # the recipient of the last piece added, if a tool call
        self._call_index: dict[int, int] = {}      # tool call id -> its index in _tool_calls
        self._tool_results: dict[int, dict[str, str]] = {   # index in _tool_calls -> author, result, status
            i: {k: c[k] for k in ("author", "result", "status") if k in c}
            for i, c in enumerate(message.tool_rounds) if "result" in c}
        self._browser_pages: tuple[dict[str, Any], ...] = tuple(message.browser_pages)
        self._dirty = False
        self._last_write = clock()
        self.writes = 0  # how many times the reply was written (for tests and logs)
        self.finished = False
        self.deleted = False  # the reply's row disappeared (conversation deleted) while streaming

    @classmethod
    def start(
        cls,
        store: HistoryStore,
        conversation_id: int,
        parent_id: int | None,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        model: str | None = None,
        remote_host: str | None = None,
    ) -> StreamingSaver:
        """Add an empty assistant reply (status "streaming") under ``parent_id`` and save into it;
        ``model``/``remote_host`` say which model writes it and on which server (None: this computer)."""
        message = store.add_message(conversation_id, parent_id, "assistant", "", channel="final", status="streaming",
                                    model=model, remote_host=remote_host)
        return cls(store, message.id, interval_s=interval_s, clock=clock)

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def tool_calls(self) -> list[tuple[str, str]]:
        """(recipient, arguments) of each tool call so far."""
        return [(r, a) for r, a in self._tool_calls]

    def add(self, channel: str | None, text: str, recipient: str | None = None) -> None:
        assert not self.finished, "add() after finish()"
        if not text:
            return
        if recipient:
            if self._tool_recipient != recipient:   # a new call (pieces of one call arrive in a row)
                self._tool_calls.append([recipient, ""])
            self._tool_calls[-1][1] += text
        else:
            (self._reasoning if channel == "analysis" else self._content).append(text)
        self._tool_recipient = recipient or None
        self._dirty = True
        self.poll()

    def record_tool_call(self, call_id: int, recipient: str, arguments: str) -> None:
        """A tool call is complete (app/tools_controller.py runs tools): tie it to its entry, or add one
        (a call whose arguments never streamed, e.g. empty)."""
        last = self._tool_calls[-1] if self._tool_calls else None
        if last is None or last[0] != recipient or self._tool_recipient != recipient or call_id in self._call_index:
            self._tool_calls.append([recipient, arguments])
        self._call_index[call_id] = len(self._tool_calls) - 1
        self._tool_recipient = None     # the next call starts a new entry, even to the same tool
        self._dirty = True

    def set_tool_result(self, call_id: int, author: str, output: str, status: str) -> None:
        index = self._call_index.get(call_id)
        if index is None:
            return
        self._tool_results[index] = {"author": author, "result": output, "status": status}
        self._dirty = True
        self.poll()

    @property
    def tool_rounds(self) -> list[ToolRound]:
        """Each tool call with its result when there is one: {recipient, arguments[, author, result, status]}."""
        return [{"recipient": r, "arguments": a, **self._tool_results.get(i, {})}
                for i, (r, a) in enumerate(self._tool_calls)]

    def set_browser_pages(self, pages: Any) -> None:
        """The browser's cursor pages so far (what the reply's citations point at)."""
        pages = tuple(dict(p) for p in pages)
        if pages != self._browser_pages:
            self._browser_pages = pages
            self._dirty = True

    @property
    def browser_pages(self) -> tuple[dict[str, Any], ...]:
        return self._browser_pages

    def add_delta(self, delta: _DeltaLike) -> None:
        self.add(delta.channel, delta.text, getattr(delta, "recipient", None))

    def poll(self) -> bool:
        """Write if there is unsaved text and ``interval_s`` has passed since the last write."""
        if self._dirty and self._clock() - self._last_write >= self._interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write the unsaved text now (status stays "streaming")."""
        if not self._dirty or self.deleted:
            return
        self._content = [self.content]
        self._reasoning = [self.reasoning]
        self._write(content=self._content[0], reasoning=self._reasoning[0], tool_calls=self.tool_rounds,
                    browser_pages=self._browser_pages)
        self._dirty = False
        self._last_write = self._clock()

    def finish(self, status: str = "done", *, usage: Any = None, error: str | None = None,
               finish_reason: str | None = None) -> StoredMessage | None:
        """Final write: all text, the status ("done", "stopped" or "error"), usage, error text and
        why it ended (the engine's Finished.reason; default: from the status).

        Returns the stored reply, or None if it was deleted meanwhile (its conversation was deleted).
        """
        assert status in ("done", "stopped", "error"), status
        self.finished = True
        self._dirty = False
        if self.deleted:
            return None
        reason = finish_reason or {"done": "stop", "stopped": "cancelled", "error": "error"}[status]
        return self._write(content=self.content, reasoning=self.reasoning, status=status, usage=usage, error=error,
                           tool_calls=self.tool_rounds, finish_reason=reason, browser_pages=self._browser_pages)

    def _write(self, **fields: Any) -> StoredMessage | None:
        try:
            message = self._store.update_message(self.message_id, **fields)
        except NotFound:
            # Deleted while streaming (the user deleted the chat): never write it back.
            log.info("history: reply %d was deleted while streaming; no longer saving it", self.message_id)
            self.deleted = True
            return None
        self.writes += 1
        return message

    def finish_from(self, finished: _FinishedLike) -> StoredMessage | None:
        """Finish from an engine ``Finished`` event: cancelled -> "stopped", error -> "error", else "done"."""
        status = _STATUS_FOR_REASON.get(finished.reason, "done")
        return self.finish(status, usage=finished.usage, error=finished.error, finish_reason=finished.reason)
