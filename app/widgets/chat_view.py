"""The conversation: a scrolling column of MessageWidgets over the composer.

Streaming is coalesced: deltas only mark the live reply dirty, and a 30 ms timer re-renders that
one widget. The rest of the thread is untouched while a reply streams, so long chats stay fluid.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from app.chat_controller import Turn
from app.finish_notes import finish_note
from app.history.models import tool_calls_of
from app.render import LIGHT, Palette
from app.widgets.composer import Composer
from app.widgets.message_widget import MessageWidget

STREAM_REFRESH_MS = 30
THINKING_TICK_MS = 500
"""The "Thinking… N s" header advances on this timer even while no reasoning text arrives."""
PAGE = 30
"""Messages built when a chat opens; older ones are added on demand, so opening stays fast."""


class ChatView(QWidget):
    edit_submitted = Signal(int, str)
    regenerate_requested = Signal(int)
    sibling_requested = Signal(int, int)

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

        self.widgets: list[MessageWidget] = []   # the shown messages: _thread[_first:]
        self._thread: list[Any] = []
        self._siblings: Callable[[int], list[Any]] = lambda _id: []
        self._turn: Turn | None = None
        self._first = 0
        self.live: MessageWidget | None = None
        self._pending: Turn | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(STREAM_REFRESH_MS)
        self._timer.timeout.connect(self._flush)
        self.render_count = 0  # live-reply renders (tests check the coalescing)
        self._thinking_timer = QTimer(self)
        self._thinking_timer.setInterval(THINKING_TICK_MS)
        self._thinking_timer.timeout.connect(self._tick_thinking)
        self._banner_timer = QTimer(self)
        self._banner_timer.setSingleShot(True)
        self._banner_timer.timeout.connect(lambda: self.banner.setVisible(False))

    # ------------------------------------------------------------------ thread

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
        if not rebuild and self.widgets and self.widgets[0].message_id in ids:
            first = ids.index(self.widgets[0].message_id)  # same chat: keep what is shown, add the rest
        else:
            first = max(0, len(thread) - PAGE)
        keep = 0
        if not rebuild:
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
        for m in thread[first + keep:]:
            w = self._make(m)
            self.column.insertWidget(self.column.count() - 1, w)
            self.widgets.append(w)
        self._update_more()
        self.container.setUpdatesEnabled(True)
        self.set_busy(turn is not None)
        QTimer.singleShot(0, self.scroll_to_bottom)

    def _make(self, m: Any) -> MessageWidget:
        w = MessageWidget(m.id, m.role, self.palette_, self.show_reasoning)
        ids = [s.id for s in self._siblings(m.id)]
        w.set_siblings(ids.index(m.id) + 1 if m.id in ids else 1, max(1, len(ids)))
        w.edit_submitted.connect(self.edit_submitted)
        w.regenerate_requested.connect(self.regenerate_requested)
        w.sibling_requested.connect(self.sibling_requested)
        if m.role == "assistant":
            w.set_origin(getattr(m, "model", None), getattr(m, "remote_host", None))
        turn = self._turn
        if turn is not None and m.id == turn.message_id:
            self.live = w
            self._apply(w, turn)
        else:
            w.set_text(m.content)
            usage = getattr(m, "usage", None) or {}
            w.set_reasoning(getattr(m, "reasoning", "") or "", thinking=False,
                            thought_seconds=usage.get("thought_seconds"))
            w.set_tool_calls(tool_calls_of(usage))
            w.set_status(m.status, getattr(m, "error", None))
            if m.role == "assistant":
                notes = (finish_note(usage.get("finish_reason"), usage.get("max_tokens"),
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
        bar = self.scroll.verticalScrollBar()
        before = bar.maximum() - bar.value()
        new_first = max(0, self._first - PAGE)
        self.container.setUpdatesEnabled(False)
        added = [self._make(m) for m in self._thread[new_first:self._first]]
        index = self.column.indexOf(self.widgets[0]) if self.widgets else self.column.count() - 1
        for offset, w in enumerate(added):
            self.column.insertWidget(index + offset, w)
        self.widgets = added + self.widgets
        self._first = new_first
        self._update_more()
        self.container.setUpdatesEnabled(True)
        self.set_busy(self._turn is not None)
        QTimer.singleShot(0, lambda: bar.setValue(bar.maximum() - before))

    def finish_live(self, status: str, error: str | None, turn: Turn, note: str | None = None) -> None:
        """The live reply ended: final render, status and note, without touching other messages."""
        self._timer.stop()
        self._thinking_timer.stop()
        self._pending = None
        if self.live is None or self.live.message_id != turn.message_id:
            return
        self.live.set_reasoning(turn.analysis, thinking=False, thought_seconds=turn.thought_seconds)
        self.live.set_tool_calls(turn.tool_calls)
        self.live.set_text(turn.final)
        self.live.set_status(status, error)
        self.live.set_note(note)
        self.live = None

    def stop_timers(self) -> None:
        for timer in (self._timer, self._thinking_timer, self._banner_timer):
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
        w.set_reasoning(turn.analysis, thinking=thinking, thought_seconds=turn.thought_seconds,
                        thinking_since=turn.first_analysis_at)
        w.set_tool_calls(turn.tool_calls)
        w.set_text(turn.final)
        w.set_status("streaming")
        self.render_count += 1
        if thinking and turn.analysis:
            if not self._thinking_timer.isActive():
                self._thinking_timer.start()
        else:
            self._thinking_timer.stop()

    # ------------------------------------------------------------------ streaming

    def on_turn_updated(self, turn: Turn) -> None:
        """Mark the live reply dirty; it is re-rendered at most every STREAM_REFRESH_MS."""
        self._pending = turn
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        turn, self._pending = self._pending, None
        if turn is None or self.live is None or self.live.message_id != turn.message_id:
            return
        bar = self.scroll.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 40
        self._apply(self.live, turn)
        if at_bottom:
            QTimer.singleShot(0, self.scroll_to_bottom)

    def scroll_to_message(self, message_id: int) -> bool:
        """Bring one message into view, loading earlier pages if needed. False if not in the thread."""
        if message_id not in [m.id for m in self._thread]:
            return False
        while message_id not in [w.message_id for w in self.widgets] and self._first > 0:
            self.show_earlier()
        widget = next(w for w in self.widgets if w.message_id == message_id)
        QTimer.singleShot(10, lambda: self.scroll.ensureWidgetVisible(widget, 0, 40))
        return True

    def scroll_to_bottom(self) -> None:
        bar = self.scroll.verticalScrollBar()
        self._follow = True
        bar.setValue(bar.maximum())

    def _on_scrolled(self, value: int) -> None:
        self._follow = value >= self.scroll.verticalScrollBar().maximum() - 40

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.scroll.verticalScrollBar().setValue(maximum)

    # ------------------------------------------------------------------ notices

    def show_banner(self, text: str, seconds: float | None = None) -> None:
        self.banner.setText(text)
        self.banner.setVisible(True)
        if seconds:
            self._banner_timer.start(int(seconds * 1000))
        else:
            self._banner_timer.stop()

    def hide_banner(self) -> None:
        self.banner.setVisible(False)

    def set_appearance(self, palette: Palette, show_reasoning: bool) -> None:
        self.palette_ = palette
        self.show_reasoning = show_reasoning
