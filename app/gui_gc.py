"""Run Python's cyclic garbage collector on the GUI thread only.

Python collects cycles in whichever thread happens to allocate past the threshold. When that is a
worker thread (the engine, a download) and the cycle holds Qt wrappers (a closed dialog, a replaced
widget), Qt objects get destroyed off the GUI thread and the process can crash. So automatic
collection is switched off and a timer on the GUI thread runs the same generational collection that
CPython would have run, at the same thresholds.
"""

from __future__ import annotations

import gc
import logging

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)


class GuiThreadGarbageCollector(QObject):
    """Disables automatic GC and collects on the GUI thread every `interval_ms`."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Collect the oldest generation whose count passed its threshold (as CPython would).

        While the engine thread imports torch (app/engine_import.py), nothing is collected: the import
        makes ~170,000 objects that any collection would walk on this thread (even the youngest
        generation holds them all: automatic collection is off), and they are moved out of the
        collector's sight once the import is done."""
        from app.engine_import import importing

        if importing():
            return 0
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                return gc.collect(generation)
        return 0

    def stop(self) -> None:
        """Collect everything now, on this thread, and give automatic collection back."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def install_gui_gc(qapp: QObject) -> GuiThreadGarbageCollector:
    """The application's one collector (made on first call, parented to the QApplication)."""
    existing = qapp.findChild(GuiThreadGarbageCollector)
    if existing is not None:
        return existing
    collector = GuiThreadGarbageCollector(qapp)
    log.debug("garbage collection moved to the GUI thread")
    return collector
