"""The conversation: a scrolling column of MessageWidgets over the composer.

Streaming is coalesced once, in the worker (app/worker.py, every 30 ms at most); here an update only
marks the live reply dirty and it is re-rendered when the event loop next runs (a zero-delay timer),
so updates that queued up while the window was busy become one render. The rest of the thread is
untouched while a reply streams.

Opening a chat builds its newest messages first and the rest in slices of a few milliseconds (the
window keeps answering meanwhile), only for the last PAGE messages; older ones come with "Show
earlier messages".
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.chat_controller import Turn
from app.finish_notes import finish_note
from app.history.models import rounds_of
from app.render import LIGHT, Palette
from app.settings import Presets
from app.widgets.composer import Composer
from app.widgets.message_widget import MessageWidget

THINKING_TICK_MS = 500
"""The "Thinking… N s" header advances on this timer even while no reasoning text arrives."""
PAGE = 30
"""Messages built when a chat opens; older ones are added on demand."""
BUILD_SLICE_S = 0.006
"""Widgets are built for at most this long before the event loop runs again (a chat opening)."""
BUILD_AT_ONCE = 1
"""The newest messages built at once, whatever the time (the reply being written)."""


def prefill_text(turn: Turn) -> str | None:
    """"Reading your message… 43 % · 1,024 / 2,380 tokens · about 9 s left" while the prompt is read."""
    stats = turn.stats
    if stats is None or stats.phase != "prefill" or stats.prefill_total <= 0:
        return None
    if stats.prefill_done >= stats.prefill_total:
        return "Read your message; starting to write…"
    text = (f"Reading your message… {int(100 * stats.prefill_fraction)} % · "
            f"{stats.prefill_done:,} / {stats.prefill_total:,} tokens")
    left = stats.prefill_seconds_left
    if left is not None:
        text += f" · about {max(1, round(left)):,} s left"
    return text


class LoadingCard(QFrame):
    """A model loading: its name, stage and progress, and Cancel."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loadingCard")
        self.setAccessibleName("Model loading")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setMaximumWidth(180)
        self.bar.setAccessibleName("Loading progress")
        layout.addWidget(self.bar)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel loading the model")
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout.addWidget(self.cancel_button)

    def show_stage(self, name: str, stage: str, fraction: float, cancelling: bool) -> None:
        self.label.setText(f"Loading {name}: {stage}" if not cancelling else f"Cancelling the load of {name}…")
        self.bar.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.cancel_button.setEnabled(not cancelling)


class ChatView(QWidget):
    edit_submitted = Signal(int, str)
    regenerate_requested = Signal(int)
    sibling_requested = Signal(int, int)
    cancel_load_requested = Signal()
    citation_clicked = Signal(int, int, int, int)   # message id, cursor, first line, last line
    tool_approval_answered = Signal(bool, bool)     # allow, always

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.palette_ = LIGHT
        self.show_reasoning = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setAccessibleName("Notice")
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.banner)
        self.banner_tag = ""
        self.loading_card = LoadingCard()
        self.loading_card.setVisible(False)
        self.loading_card.cancel_requested.connect(self.cancel_load_requested)
        layout.addWidget(self.loading_card)

        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.container = QWidget()
        self.container.setBackgroundRole(QPalette.ColorRole.Base)
        self.container.setAutoFillBackground(True)
        self.column = QVBoxLayout(self.container)
        self.column.setContentsMargins(16, 12, 16, 12)
        self.column.setSpacing(10)
        self.more_button = QPushButton("")
        self.more_button.setAccessibleName("Show earlier messages")
        self.more_button.setFlat(True)
        self.more_button.setVisible(False)
        self.more_button.clicked.connect(self.show_earlier)
        self.column.addWidget(self.more_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.empty_label = QLabel("")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setProperty("muted", True)
        self.empty_label.setWordWrap(True)
        self.empty_label.setObjectName("emptyNote")
        self.empty_label.setContentsMargins(40, 80, 40, 0)  # well down the empty page, not at its top edge
        self.column.addWidget(self.empty_label)
        self.column.addStretch(1)
        self.scroll.setWidget(self.container)
        layout.addWidget(self.scroll, 1)
        # Follow the end of the chat while the view is at the bottom: message heights settle in
        # several layout passes (and a reply grows), so stick to the end whenever the range grows.
        self._follow = True
        bar = self.scroll.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

        self.composer = Composer()
        layout.addWidget(self.composer)

        self.widgets: list[MessageWidget] = []   # the built messages, in thread order
        self._thread: list[Any] = []
        self._siblings: Callable[[int], list[Any]] = lambda _id: []
        self._turn: Turn | None = None
        self._first = 0                          # thread index of the oldest message that has (or gets) a widget
        self._todo: list[int] = []               # thread indexes still to build, newest first
        self.live: MessageWidget | None = None
        self._pending: Turn | None = None
        self._timer = QTimer(self)               # renders the live reply when the event loop next runs
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._flush)
        self._builder = QTimer(self)
        self._builder.setSingleShot(True)
        self._builder.setInterval(0)
        self._builder.timeout.connect(self._build_some)
        self.render_count = 0  # live-reply renders (tests check the coalescing)
        self._thinking_timer = QTimer(self)
        self._thinking_timer.setInterval(THINKING_TICK_MS)
        self._thinking_timer.timeout.connect(self._tick_thinking)
        self._banner_timer = QTimer(self)
        self._banner_timer.setSingleShot(True)
        self._banner_timer.timeout.connect(lambda: self.clear_banner(self.banner_tag))

    # ------------------------------------------------------------------ thread

    @property
    def building(self) -> bool:
        """Widgets of the shown chat are still being built (a long chat opening)."""
        return bool(self._todo)

    def set_thread(self, thread: list[Any], siblings: Callable[[int], list[Any]], turn: Turn | None,
                   empty_text: str, *, rebuild: bool = False) -> None:
        """Show `thread`: its last PAGE messages (more on demand with "Show earlier messages").

        Widgets of unchanged messages are kept, so a reply added to a long chat builds one widget,
        not all of them; `rebuild` redoes all (theme changed).
        """
        self._timer.stop()
        self._thinking_timer.stop()
        self._pending = None
        self._thread, self._siblings, self._turn = thread, siblings, turn
        ids = [m.id for m in thread]
        if not rebuild and self.widgets and self.widgets[0].message_id in ids and not self._todo:
            first = min(ids.index(self.widgets[0].message_id), self._first)  # same chat: keep what is shown
        else:
            first = max(0, len(thread) - PAGE)
        keep = 0
        if not rebuild and not self._todo:
            for w, m in zip(self.widgets, thread[first:]):
                if w.message_id != m.id or (turn is not None and m.id == turn.message_id) \
                        or getattr(m, "status", "done") == "streaming" or w.status_shown == "streaming":
                    break
                keep += 1
        self.container.setUpdatesEnabled(False)
        for w in self.widgets[keep:]:
            w.setParent(None)
            w.deleteLater()
        self.widgets = self.widgets[:keep]
        self._first = first
        self.live = None
        self.empty_label.setText(empty_text)
        self.empty_label.setVisible(not thread)
        self._todo = list(range(len(thread) - 1, first + keep - 1, -1))   # newest first
        self._build_some(at_least=BUILD_AT_ONCE)
        self._update_more()
        self.container.setUpdatesEnabled(True)
        self.set_busy(turn is not None)
        self._follow = True
        QTimer.singleShot(0, self.scroll_to_bottom)

    def _build_some(self, at_least: int = 0) -> None:
        """Build widgets newest first for BUILD_SLICE_S (and at least `at_least`); the rest later."""
        start = time.perf_counter()
        built = 0
        while self._todo and (built < at_least or time.perf_counter() - start < BUILD_SLICE_S):
            index = self._todo.pop(0)
            w = self._make(self._thread[index], index)
            position = sum(1 for other in self.widgets if self._index_of(other) < index)
            anchor = self.widgets[position] if position < len(self.widgets) else None
            layout_index = self.column.indexOf(anchor) if anchor is not None else self.column.count() - 1
            self.column.insertWidget(layout_index, w)
            self.widgets.insert(position, w)
            w.set_actions_enabled(self._turn is None)
            built += 1
        if self._todo:
            self._builder.start()

    def _index_of(self, w: MessageWidget) -> int:
        return getattr(w, "thread_index", 0)

    def _make(self, m: Any, index: int) -> MessageWidget:
        w = MessageWidget(m.id, m.role, self.palette_, self.show_reasoning)
        w.thread_index = index  # type: ignore[attr-defined]
        ids = [s.id for s in self._siblings(m.id)]
        w.set_siblings(ids.index(m.id) + 1 if m.id in ids else 1, max(1, len(ids)))
        w.edit_submitted.connect(self.edit_submitted)
        w.regenerate_requested.connect(self.regenerate_requested)
        w.sibling_requested.connect(self.sibling_requested)
        w.citation_clicked.connect(self.citation_clicked)
        w.approval_answered.connect(self.tool_approval_answered)
        if m.role == "assistant":
            w.set_origin(getattr(m, "model", None), getattr(m, "remote_host", None))
        turn = self._turn
        if turn is not None and m.id == turn.message_id:
            self.live = w
            self._apply(w, turn)
        else:
            usage = getattr(m, "usage", None) or {}
            w.set_text(m.content)
            w.set_reasoning(getattr(m, "reasoning", "") or "", thinking=False,
                            thought_seconds=usage.get("thought_seconds"))
            w.set_tool_calls(list(getattr(m, "tool_calls", ()) or ()))
            w.set_tool_rounds(rounds_of(m))
            w.set_status(m.status, getattr(m, "error", None), interrupted=bool(getattr(m, "interrupted", False)))
            if m.role == "assistant":
                notes = (finish_note(getattr(m, "finish_reason", None), usage.get("max_tokens"),
                                     usage.get("completion_tokens")), usage.get("note"))
                w.set_note(" ".join(n for n in notes if n) or None)
        return w

    def _update_more(self) -> None:
        self.more_button.setVisible(self._first > 0)
        self.more_button.setText(f"Show {min(PAGE, self._first)} earlier messages ({self._first} hidden)")

    def show_earlier(self) -> None:
        """Prepend the previous PAGE messages, keeping the view where it was."""
        if self._first <= 0:
            return
        while self._todo:      # finish the page being built first
            self._build_some(at_least=len(self._todo))
        bar = self.scroll.verticalScrollBar()
        before = bar.maximum() - bar.value()
        new_first = max(0, self._first - PAGE)
        self.container.setUpdatesEnabled(False)
        self._todo = list(range(self._first - 1, new_first - 1, -1))
        self._first = new_first
        self._build_some(at_least=len(self._todo))
        self._update_more()
        self.container.setUpdatesEnabled(True)
        self.set_busy(self._turn is not None)
        self._follow = False
        QTimer.singleShot(0, lambda: bar.setValue(bar.maximum() - before))

    def finish_live(self, status: str, error: str | None, turn: Turn, note: str | None = None,
                    bug: bool = False) -> None:
        """The live reply ended: final render, status and note, without touching other messages."""
        self._timer.stop()
        self._thinking_timer.stop()
        self._pending = None
        if self.live is None or self.live.message_id != turn.message_id:
            return
        self.live.set_progress(None)
        self.live.set_reasoning(turn.analysis, thinking=False, thought_seconds=turn.thought_seconds)
        self.live.set_tool_calls(turn.tool_calls)
        self.live.set_tool_rounds(turn.tool_rounds)
        self.live.set_text(turn.final)
        self.live.set_status(status, error, bug=bug)
        self.live.set_note(note)
        self.live = None

    def stop_timers(self) -> None:
        for timer in (self._timer, self._thinking_timer, self._banner_timer, self._builder):
            timer.stop()

    def _tick_thinking(self) -> None:
        """Advance the live reply's "Thinking… N s" (its label only; the text is not re-rendered)."""
        if self.live is None or not self.live.tick_thinking():
            self._thinking_timer.stop()

    def set_busy(self, busy: bool) -> None:
        for w in self.widgets:
            w.set_actions_enabled(not busy)

    def _apply(self, w: MessageWidget, turn: Turn) -> None:
        thinking = turn.first_final_at is None
        w.set_progress(prefill_text(turn))
        w.set_reasoning(turn.analysis, thinking=thinking, thought_seconds=turn.thought_seconds,
                        thinking_since=turn.first_analysis_at)
        w.set_tool_calls(turn.tool_calls)
        w.set_tool_rounds(turn.tool_rounds, turn.pending_approval)
        w.set_text(turn.final, streaming=True)
        w.set_status("streaming")
        self.render_count += 1
        if thinking and turn.analysis:
            if not self._thinking_timer.isActive():
                self._thinking_timer.start()
        else:
            self._thinking_timer.stop()

    # ------------------------------------------------------------------ streaming

    def on_turn_updated(self, turn: Turn) -> None:
        """Mark the live reply dirty; it is re-rendered once the events queued now are handled."""
        self._pending = turn
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        turn, self._pending = self._pending, None
        if turn is None or self.live is None or self.live.message_id != turn.message_id:
            return
        self._apply(self.live, turn)

    def scroll_to_message(self, message_id: int) -> bool:
        """Bring one message into view, loading earlier pages if needed. False if not in the thread."""
        if message_id not in [m.id for m in self._thread]:
            return False
        while self._todo:
            self._build_some(at_least=len(self._todo))
        while message_id not in [w.message_id for w in self.widgets] and self._first > 0:
            self.show_earlier()
        widget = next(w for w in self.widgets if w.message_id == message_id)
        self._follow = False
        QTimer.singleShot(10, lambda: self.scroll.ensureWidgetVisible(widget, 0, 40))
        return True

    def scroll_to_bottom(self) -> None:
        if not self._follow:
            return
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_scrolled(self, value: int) -> None:
        self._follow = value >= self.scroll.verticalScrollBar().maximum() - 40

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.scroll.verticalScrollBar().setValue(maximum)

    # ------------------------------------------------------------------ notices

    def show_banner(self, text: str, seconds: float | None = None, *, tag: str = "", kind: str = "user") -> None:
        """A notice over the chat. `tag` names its condition; `clear_banner(tag)` takes it away once that
        condition is gone (a load that works, a reply that finishes). kind "bug" looks like one."""
        self.banner.setText(text)
        self.banner.setProperty("kind", kind)
        self.banner.style().unpolish(self.banner)
        self.banner.style().polish(self.banner)
        self.banner.setVisible(True)
        self.banner_tag = tag
        if seconds:
            self._banner_timer.start(int(seconds * 1000))
        else:
            self._banner_timer.stop()

    def clear_banner(self, tag: str) -> None:
        if self.banner_tag == tag:
            self.hide_banner()

    def hide_banner(self) -> None:
        self.banner.setVisible(False)
        self.banner_tag = ""
        self._banner_timer.stop()

    def show_loading(self, name: str, stage: str, fraction: float, cancelling: bool) -> None:
        self.loading_card.show_stage(name, stage, fraction, cancelling)
        self.loading_card.setVisible(True)

    def hide_loading(self) -> None:
        self.loading_card.setVisible(False)

    def set_presets(self, presets: Presets) -> None:
        self.composer.set_presets(presets)

    def on_math_ready(self) -> None:
        """Formulas drawn in the background are ready: messages that showed their TeX render again."""
        from app.render import render_markdown

        render_markdown.cache_clear()
        for w in self.widgets:
            w.refresh_math()

    def set_appearance(self, palette: Palette, show_reasoning: bool) -> None:
        self.palette_ = palette
        self.show_reasoning = show_reasoning
