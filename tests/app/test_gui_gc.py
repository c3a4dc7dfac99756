"""Garbage collection runs on the GUI thread, never on a worker thread."""

from __future__ import annotations

import gc
import threading

from app.gui_gc import install_gui_gc


class _Cycle:
    collected_on: list[str] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.collected_on.append(threading.current_thread().name)


def test_cycles_made_on_a_worker_thread_are_collected_on_the_gui_thread(qapp, qtbot) -> None:
    collector = install_gui_gc(qapp)
    assert install_gui_gc(qapp) is collector          # one per application
    assert not gc.isenabled()
    _Cycle.collected_on.clear()

    def churn() -> None:                              # enough allocations to trigger automatic GC
        for _ in range(5000):
            _Cycle()
            [[] for _ in range(20)]

    worker = threading.Thread(target=churn, name="worker")
    worker.start()
    worker.join()
    assert _Cycle.collected_on == []                  # nothing collected on the worker
    qtbot.waitUntil(lambda: len(_Cycle.collected_on) > 0, timeout=5000)
    gc.collect()
    assert set(_Cycle.collected_on) == {threading.main_thread().name}
