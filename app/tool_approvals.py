"""The python tool's pending "may this code run?" questions, between the engine thread and the window.

Its own module, with nothing but the standard library, so that the worker can hold one from the start without
importing the tools themselves (engine/tools, imported by app/tool_worker.py on the first reply with tools).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class Approvals:
    """Pending "may this code run?" questions, keyed by (request id, call id). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], tuple[threading.Event, list[bool]]] = {}
        self.on_cancel: list[Any] = []     # called by cancel_all (the worker's tools interrupt python)

    def wait(self, request_id: int, call_id: int, cancelled: threading.Event) -> bool:
        event, answer = threading.Event(), [False]
        with self._lock:
            self._pending[(request_id, call_id)] = (event, answer)
        try:
            while not event.wait(0.1):
                if cancelled.is_set():
                    return False
            return answer[0]
        finally:
            with self._lock:
                self._pending.pop((request_id, call_id), None)

    def answer(self, request_id: int, call_id: int, allow: bool) -> None:
        with self._lock:
            pending = self._pending.get((request_id, call_id))
        if pending is not None:
            pending[1][0] = bool(allow)
            pending[0].set()

    def cancel_all(self) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for event, answer in pending:
            answer[0] = False
            event.set()
        for callback in list(self.on_cancel):
            try:
                callback()
            except Exception:  # noqa: BLE001 - stopping must not fail
                log.exception("interrupting a tool failed")
