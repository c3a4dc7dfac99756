"""Short jobs off the GUI thread (config reads, fit checks, a file to import): run a function on a
small thread pool and get its result, or its exception, back on the GUI thread.

The results are plain Python objects; no Qt object is made or destroyed on the pool's threads (see
app/gui_gc.py for why that matters).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class Background(QObject):
    """`run(fn, on_done, on_error)`: `fn()` on a pool thread; the callbacks on this object's thread."""

    _finished = Signal(object, object, object)   # callback, value, is_error

    def __init__(self, parent: QObject | None = None, workers: int = 2) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lantern-bg")
        self._finished.connect(self._deliver)
        self._closed = False
        self.pending = 0

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
            on_error: Callable[[BaseException], None] | None = None) -> Future[Any]:
        self.pending += 1

        def job() -> Any:
            try:
                value = fn()
            except BaseException as error:  # noqa: BLE001 - handed to on_error on the GUI thread
                self._finished.emit(on_error, error, True)
                raise
            self._finished.emit(on_done, value, False)
            return value

        return self._pool.submit(job)

    def _deliver(self, callback: Callable[[Any], None] | None, value: Any, is_error: bool) -> None:
        self.pending -= 1
        if self._closed:
            return
        if callback is None:
            if is_error:
                log.error("background job failed", exc_info=value)
            return
        callback(value)

    def close(self) -> None:
        """Drop results not delivered yet; the pool's threads end after their current job."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
