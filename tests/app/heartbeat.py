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
    worst_gui_cpu_ms: float = 0.0    # CPU time the GUI thread itself used during the worst gap
    worst_process_cpu_ms: float = 0.0  # CPU time of the whole process (all threads) during it

    def row(self) -> str:
        return (f"| {self.label:<34} | {self.worst_ms:8.1f} | {self.over_16ms:6d} | {self.over_50ms:6d} | "
                f"{self.worst_gui_cpu_ms:7.1f} | {self.worst_process_cpu_ms:7.1f} | {self.seconds:6.2f} |")


TABLE_HEADER = ("| case                               | worst ms |  >16ms |  >50ms | GUI cpu | all cpu |      s |\n"
                "|------------------------------------|----------|--------|--------|---------|---------|--------|")
"""GUI cpu / all cpu: CPU milliseconds the GUI thread / the whole process used during the worst gap.
A worst gap much longer than both was time the process was not running at all (other programs on
a busy machine); a GUI cpu close to the gap is work done on the GUI thread."""


class Heartbeat(QObject):
    """A precise `interval_ms` timer whose tick times are kept between `start()` and `stop()`."""

    def __init__(self, interval_ms: int = 5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._ticks: list[float] = []
        self._cpu: list[tuple[float, float]] = []

    def _tick(self) -> None:
        self._ticks.append(time.perf_counter())
        self._cpu.append((time.thread_time(), time.process_time()))

    def start(self) -> None:
        self._ticks = [time.perf_counter()]
        self._cpu = [(time.thread_time(), time.process_time())]
        self._timer.start()

    def stop(self, label: str) -> Gaps:
        self._timer.stop()
        self._tick()
        return self.gaps(label)

    def gaps(self, label: str, since: float = 0.0, until: float = float("inf")) -> Gaps:
        """The gaps that ended in [since, until) (perf_counter seconds)."""
        rows = [((b - a) * 1000.0, (cb[0] - ca[0]) * 1000.0, (cb[1] - ca[1]) * 1000.0, b)
                for a, b, ca, cb in zip(self._ticks, self._ticks[1:], self._cpu, self._cpu[1:])
                if since <= b < until]
        if not rows:
            return Gaps(label, 0.0, 0, 0.0, 0, 0)
        worst = max(rows, key=lambda r: r[0])
        first = max(since, self._ticks[0])
        last = min(until, self._ticks[-1])
        return Gaps(label, last - first, len(rows), worst[0], sum(r[0] > FRAME_MS for r in rows),
                    sum(r[0] > STALL_MS for r in rows), worst[3] - first, worst[1], worst[2])


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
