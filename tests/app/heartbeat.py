"""A heartbeat on the GUI thread: how long the event loop went without running a 5 ms timer.

Every gap between two ticks longer than the interval is time the GUI thread spent elsewhere (a
slot, a layout, a paint, a database write, the GIL held by another thread). 16 ms is one frame at
60 Hz; 50 ms is where a user notices a stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer

FRAME_MS = 16.0
STALL_MS = 50.0


@dataclass(frozen=True)
class Gaps:
    """What one measured stretch looked like from the GUI thread."""

    label: str
    seconds: float
    ticks: int
    worst_ms: float
    over_16ms: int
    over_50ms: int
    worst_at_s: float = 0.0          # when the worst gap ended, seconds after the start

    def row(self) -> str:
        return (f"| {self.label:<34} | {self.worst_ms:8.1f} | {self.over_16ms:6d} | {self.over_50ms:6d} | "
                f"{self.seconds:6.2f} |")


TABLE_HEADER = ("| case                               | worst ms |  >16ms |  >50ms |      s |\n"
                "|------------------------------------|----------|--------|--------|--------|")


class Heartbeat(QObject):
    """A precise `interval_ms` timer whose tick times are kept between `start()` and `stop()`."""

    def __init__(self, interval_ms: int = 5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._ticks: list[float] = []

    def _tick(self) -> None:
        self._ticks.append(time.perf_counter())

    def start(self) -> None:
        self._ticks = [time.perf_counter()]
        self._timer.start()

    def stop(self, label: str) -> Gaps:
        self._timer.stop()
        self._ticks.append(time.perf_counter())
        gaps = [(b - a) * 1000.0 for a, b in zip(self._ticks, self._ticks[1:])]
        worst = max(gaps, default=0.0)
        at = gaps.index(worst) + 1 if gaps else 0
        return Gaps(label, self._ticks[-1] - self._ticks[0], len(self._ticks) - 2, worst,
                    sum(g > FRAME_MS for g in gaps), sum(g > STALL_MS for g in gaps),
                    self._ticks[at] - self._ticks[0] if gaps else 0.0)


def spin_until(condition: Callable[[], bool], timeout_s: float, *, what: str = "condition") -> None:
    """Run an event loop (as the app's `exec()` does: sleeping until events come) until `condition()`."""
    if condition():
        return
    loop = QEventLoop()
    end = time.monotonic() + timeout_s
    timed_out = False

    def check() -> None:
        nonlocal timed_out
        if condition():
            loop.quit()
        elif time.monotonic() > end:
            timed_out = True
            loop.quit()

    poll = QTimer()
    poll.setInterval(10)
    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    if timed_out:
        raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s")


def spin_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    spin_until(lambda: time.monotonic() >= end, seconds + 5)


class StallSampler:
    """Diagnostics: a watchdog thread that, whenever the heartbeat has not ticked for `after_ms`,
    records the Python stacks of every thread (what the GUI thread was doing, and who held the GIL)."""

    def __init__(self, heart: Heartbeat, after_ms: float = 30.0) -> None:
        import threading

        self._heart = heart
        self._after = after_ms / 1000.0
        self._stop = threading.Event()
        self.samples: list[tuple[float, dict[str, list[str]]]] = []
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        import sys
        import threading
        import traceback

        names = {}
        while not self._stop.wait(0.005):
            ticks = self._heart._ticks
            if not ticks or not self._heart._timer.isActive():
                continue
            late = time.perf_counter() - ticks[-1]
            if late < self._after:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            stacks = {names.get(ident, str(ident)): traceback.format_stack(frame)[-8:]
                      for ident, frame in sys._current_frames().items() if ident != threading.get_ident()}
            self.samples.append((late * 1000.0, stacks))
            self._stop.wait(self._after)

    def report(self, limit: int = 10) -> str:
        lines = []
        for late, stacks in self.samples[:limit]:
            lines.append(f"--- GUI thread late by {late:.0f} ms")
            for name, stack in stacks.items():
                lines.append(f"  [{name}]")
                lines.extend("    " + s.strip().replace("\n", "\n    ") for s in stack[-5:])
        return "\n".join(lines)
