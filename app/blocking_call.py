"""Run a blocking call (network, keyring) off the GUI thread and get its result back on it.

Not app/background.py's `Background`: that is a small pool for short jobs (fit checks, config reads),
which a Test connection waiting out a network timeout would hold for seconds. Here each call has a
thread of its own, and a newer call on the same object replaces an older one (its result is dropped)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class BackgroundCall(QObject):
    """`start(fn)` runs fn on a daemon thread; `done(result)` or `failed(exception)` fires on the GUI thread."""

    done = Signal(object)
    failed = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.running = False
        self._generation = 0

    def start(self, fn: Callable[[], Any], name: str = "background-call") -> None:
        self._generation += 1
        generation = self._generation
        self.running = True

        def work() -> None:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the GUI, which shows it
                log.info("%s failed: %s", name, exc)
                self._finish(generation, self.failed, exc)
            else:
                self._finish(generation, self.done, result)

        threading.Thread(target=work, name=name, daemon=True).start()

    def _finish(self, generation: int, signal: Any, value: object) -> None:
        if generation == self._generation:      # a newer call replaced this one: its result is dropped
            self.running = False
            try:
                signal.emit(value)
            except RuntimeError:                # the owner was deleted while the call ran
                pass
