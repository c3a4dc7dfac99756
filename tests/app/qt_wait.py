"""Waiting on the Qt event loop outside pytest-qt (the screenshot scripts): one copy of the two helpers."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtWidgets import QApplication


def wait_until(qapp: QApplication, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Process events until `condition()` holds; TimeoutError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        qapp.processEvents()
        time.sleep(0.01)


def settle(qapp: QApplication, n: int = 10) -> None:
    """Let `n` rounds of events (layouts, repaints, queued signals) run, 10 ms apart."""
    for _ in range(n):
        qapp.processEvents()
        time.sleep(0.01)
