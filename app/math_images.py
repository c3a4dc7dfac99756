"""TeX math as images, laid out by ziamath and painted by Qt's SVG renderer on one background thread.

Qt's rich text cannot lay out math, so each formula becomes a PNG (a data: URL the message's
QTextDocument shows inline). ziamath turns the TeX (through latex2mathml) into SVG paths set in the
STIX Two Math font it carries, with the font's own math layout tables; it covers the TeX math answers
use (fractions, roots, sums, integrals, matrices, Greek, accents, sub/superscripts). A formula it
cannot lay out is shown as its TeX source. The SVG is painted into a QImage (allowed off the GUI
thread) and saved as PNG.

The first formula loads ziamath and its font (about 0.15 s), so nothing is drawn on the GUI thread:
`lookup()` answers from the cache or queues the formula, and `on_ready` is called (from the drawing
thread) once queued formulas are drawn; the window then renders those messages again.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.svg_png import svg_to_png

log = logging.getLogger(__name__)

INLINE_PX = 17      # font size of a formula inside a line, in pixels (the body text is about 15 px)
DISPLAY_PX = 20     # a formula on a line of its own, a little larger


@dataclass(frozen=True, slots=True)
class Formula:
    tex: str          # without delimiters
    display: bool     # $$...$$ / \[...\]: a block of its own, drawn larger
    color: str        # "#rrggbb", the text colour of the theme


class MathImages:
    """The cache of drawn formulas and the thread that draws them."""

    def __init__(self) -> None:
        self._done: dict[Formula, str | None] = {}     # None: ziamath cannot lay it out
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
"""ziamath keeps its configuration and font caches in module state: one formula at a time."""


def _draw(formula: Formula) -> str | None:
    with _DRAWING:
        return _draw_locked(formula)


def _draw_locked(formula: Formula) -> str | None:
    try:
        import ziamath

        ziamath.config.svg2 = False      # SVG 1.1 (paths, no <symbol>): what Qt's SVG renderer draws
        svg = ziamath.Latex(formula.tex, size=DISPLAY_PX if formula.display else INLINE_PX,
                            color=formula.color).svg()
    except Exception as error:  # noqa: BLE001 - unsupported TeX (or a broken install): show the source
        log.info("cannot draw %r: %s", formula.tex, error)
        return None
    png = svg_to_png(svg.encode("utf-8"))
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


MATH = MathImages()
"""The app's one cache and drawing thread."""
