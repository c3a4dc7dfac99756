"""TeX math as images, drawn by matplotlib's mathtext on one background thread. Qt-free.

Qt's rich text cannot lay out math, so each formula becomes a PNG (a data: URL the message's
QTextDocument shows inline). mathtext covers the TeX math most answers use (fractions, roots, sums,
integrals, Greek, accents, sub/superscripts); a formula it cannot draw is shown as its TeX source.

Drawing the first formula loads matplotlib and its fonts (about a second), so nothing is drawn on
the GUI thread: `lookup()` answers from the cache or queues the formula, and `on_ready` is called
(from the drawing thread) once queued formulas are drawn; the window then renders those messages again.
"""

from __future__ import annotations

import base64
import io
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

INLINE_DPI = 130
DISPLAY_DPI = 140


@dataclass(frozen=True, slots=True)
class Formula:
    tex: str          # without delimiters
    display: bool     # $$...$$ / \[...\]: a block of its own, drawn larger
    color: str        # "#rrggbb", the text colour of the theme


class MathImages:
    """The cache of drawn formulas and the thread that draws them."""

    def __init__(self) -> None:
        self._done: dict[Formula, str | None] = {}     # None: mathtext cannot draw it
        self._queued: set[Formula] = set()
        self._queue: queue.SimpleQueue[Formula] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.on_ready: Callable[[], None] | None = None

    def lookup(self, formula: Formula) -> tuple[bool, str | None]:
        """(known, data URL or None). Not known yet: it is queued for drawing."""
        with self._lock:
            if formula in self._done:
                return True, self._done[formula]
            if formula not in self._queued:
                self._queued.add(formula)
                self._queue.put(formula)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="math-images", daemon=True)
                    self._thread.start()
        return False, None

    def draw_now(self, formula: Formula) -> str | None:
        """Draw on the calling thread (tests; never the GUI thread)."""
        url = _draw(formula)
        with self._lock:
            self._done[formula] = url
        return url

    def _run(self) -> None:
        while True:
            formula = self._queue.get()
            url = _draw(formula)
            with self._lock:
                self._done[formula] = url
                self._queued.discard(formula)
                idle = not self._queued
            if idle and self.on_ready is not None:
                try:
                    self.on_ready()
                except Exception:  # noqa: BLE001 - a closed window must not kill the drawing thread
                    log.exception("math ready callback failed")


_DRAWING = threading.Lock()
"""mathtext is not safe to use from two threads at once."""


def _draw(formula: Formula) -> str | None:
    with _DRAWING:
        return _draw_locked(formula)


def _draw_locked(formula: Formula) -> str | None:
    try:
        from matplotlib import mathtext

        buf = io.BytesIO()
        mathtext.math_to_image(f"${formula.tex}$", buf, dpi=DISPLAY_DPI if formula.display else INLINE_DPI,
                               format="png", color=formula.color)
    except Exception as error:  # noqa: BLE001 - unsupported TeX (or a broken install): show the source
        log.info("cannot draw %r: %s", formula.tex, error)
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


MATH = MathImages()
"""The app's one cache and drawing thread."""
