"""One message: Markdown body, collapsible reasoning and tool calls, copy/edit/regenerate buttons, ‹ n/m › versions.

The tools Lantern runs (browser, python) show as tool blocks (app/widgets/tool_block.py, made when a reply
has one) with the python approval; citations in a reply (`【3†L9-L11】`) are links (`citation_clicked`).

A long message the user pasted shows its first lines with "Show all"; lines too long for the width
wrap anywhere rather than being clipped. Other parts of the app add blocks of their own (a tool's
output, an attachment) with `add_block(widget)`.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any, Callable

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.render import COPY_SCHEME, LIGHT, Palette, Rendered, render_markdown, render_plain, split_blocks
from app.widgets.citations import CITE_SCHEME, link_citations, parse_citation_url

log = logging.getLogger(__name__)

REASONING_LABEL = "Reasoning — the model's unfiltered chain of thought"
TOOL_CALL_LABEL = "Tool call"
COLLAPSE_LINES = 12
"""A user's message longer than this many lines (or COLLAPSE_CHARS) shows its first lines and "Show all"."""
COLLAPSE_CHARS = 1500
CUT_OFF_TEXT = "· cut off: Lantern closed before this reply finished"


def collapsed_preview(text: str) -> str | None:
    """The first lines of a long message (None when it is short enough to show whole)."""
    lines = text.split("\n")
    if len(lines) <= COLLAPSE_LINES and len(text) <= COLLAPSE_CHARS:
        return None
    head = "\n".join(lines[:8])
    return head[:COLLAPSE_CHARS // 2].rstrip() + " …"


class AutoHeightBrowser(QTextBrowser):
    """A read-only rich-text view as tall as its text (the chat's scroll area does the scrolling)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.LinksAccessibleByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.document().setDocumentMargin(2)
        option = self.document().defaultTextOption()   # a long unbroken line wraps instead of being clipped
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.document().setDefaultTextOption(option)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def _fit(self, *_: object) -> None:
        height = int(self.document().size().height()) + 2 * self.frameWidth() + 2
        if height != self.height():
            self.setFixedHeight(height)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.document().setTextWidth(self.viewport().width())
        self._fit()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(super().sizeHint().width(), self.height())


class MessageWidget(QFrame):
    """Shows one StoredMessage (or the live reply). Emits requests; the view wires them up."""

    edit_submitted = Signal(int, str)       # message id, new text
    regenerate_requested = Signal(int)      # message id
    sibling_requested = Signal(int, int)    # message id, step (-1 / +1)
    citation_clicked = Signal(int, int, int, int)   # message id, cursor, first line, last line
    approval_answered = Signal(bool, bool)          # allow, always: the python approval in a tool block

    def __init__(self, message_id: int, role: str, palette: Palette = LIGHT,
                 show_reasoning: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message_id = message_id
        self.role = role
        self._palette = palette
        self._show_reasoning = show_reasoning
        self._text = ""
        self._reasoning = ""
        self._rendered = Rendered("", ())
        self.setObjectName("message")
        self.setProperty("role", role)
        self.setAccessibleName("Your message" if role == "user" else "Model reply")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(4)

        header = QHBoxLayout()
        self.role_label = QLabel("You" if role == "user" else "Assistant")
        font = self.role_label.font()
        font.setBold(True)
        self.role_label.setFont(font)
        header.addWidget(self.role_label)
        self.origin_label = QLabel("")   # "on gpu-box": written by a model on a server (app/remote)
        self.origin_label.setObjectName("originBadge")
        self.origin_label.setVisible(False)
        header.addWidget(self.origin_label)
        self.status_label = QLabel("")
        self.status_label.setProperty("muted", True)
        self.status_label.setAccessibleName("Message status")
        header.addWidget(self.status_label)
        header.addStretch(1)
        self.prev_button = self._tool("‹", "Previous version", lambda: self.sibling_requested.emit(self.message_id, -1))
        self.sibling_label = QLabel("")
        self.sibling_label.setProperty("muted", True)
        self.next_button = self._tool("›", "Next version", lambda: self.sibling_requested.emit(self.message_id, 1))
        for w in (self.prev_button, self.sibling_label, self.next_button):
            header.addWidget(w)
        self.copy_button = self._tool("Copy", "Copy message", self.copy_message)
        header.addWidget(self.copy_button)
        self.edit_button = self._tool("Edit", "Edit and resend", self.begin_edit)
        self.regenerate_button = self._tool("Regenerate", "Regenerate reply",
                                            lambda: self.regenerate_requested.emit(self.message_id))
        header.addWidget(self.edit_button)
        header.addWidget(self.regenerate_button)
        self.edit_button.setVisible(role == "user")
        self.regenerate_button.setVisible(role == "assistant")
        layout.addLayout(header)

        # Reasoning: live while streaming, collapsed once the answer starts.
        self.reasoning_toggle = QToolButton()
        self.reasoning_toggle.setObjectName("reasoningToggle")
        self.reasoning_toggle.setCheckable(True)
        self.reasoning_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.reasoning_toggle.setAccessibleName("Show or hide reasoning")
        self.reasoning_toggle.toggled.connect(self._on_reasoning_toggled)
        self.reasoning_frame = QFrame()
        self.reasoning_frame.setObjectName("reasoning")
        rlayout = QVBoxLayout(self.reasoning_frame)
        rlayout.setContentsMargins(8, 0, 0, 0)
        self._reasoning_view: AutoHeightBrowser | None = None   # made when there is reasoning to show
        layout.addWidget(self.reasoning_toggle)
        layout.addWidget(self.reasoning_frame)
        self.reasoning_toggle.setVisible(False)
        self.reasoning_frame.setVisible(False)
        self._thinking = False
        self._thought_seconds: float | None = None

        # Tool calls (a commentary message addressed to a tool): one collapsed block each, apart
        # from the answer. Lantern runs no tools; the arguments are shown for what they are.
        self.tool_calls_frame = QWidget()
        self.tool_calls_frame.setObjectName("toolCalls")
        self._tool_layout = QVBoxLayout(self.tool_calls_frame)
        self._tool_layout.setContentsMargins(0, 0, 0, 0)
        self._tool_layout.setSpacing(2)
        self.tool_call_toggles: list[QToolButton] = []
        self.tool_call_views: list[AutoHeightBrowser] = []
        self._tool_calls: list[tuple[str, str]] = []
        layout.addWidget(self.tool_calls_frame)
        self.tool_calls_frame.setVisible(False)
        self._tool_blocks: Any = None    # app.widgets.tool_block.ToolBlocks, made for a reply that used tools

        self.progress_label = QLabel("")   # "Reading your message… 43 %" while the prompt is read
        self.progress_label.setObjectName("progress")
        self.progress_label.setProperty("muted", True)
        self.progress_label.setAccessibleName("Progress")
        self.progress_label.setVisible(False)
        layout.addWidget(self.progress_label)

        self.body = AutoHeightBrowser()
        self.body.setAccessibleName("Message text")
        self.body.anchorClicked.connect(self._on_anchor)
        layout.addWidget(self.body)
        # While a reply streams, its finished Markdown blocks are appended to `body` once each and only
        # the open last block is rendered again, into `tail` (see app.render.split_blocks).
        self.tail = AutoHeightBrowser()
        self.tail.setAccessibleName("Message text being written")
        self.tail.anchorClicked.connect(self._on_anchor)
        self.tail.setVisible(False)
        layout.addWidget(self.tail)
        self._blocks: list[str] = []          # source of the blocks appended to `body`
        self._math_pending = False            # a formula shown as TeX is still being drawn
        self._code: list[str] = []            # raw code of every code block in `body`, in order
        self._tail_text: str | None = None
        self.show_all_button = QPushButton("")
        self.show_all_button.setObjectName("showAll")
        self.show_all_button.setFlat(True)
        self.show_all_button.setAccessibleName("Show the whole message")
        self.show_all_button.clicked.connect(self.toggle_collapsed)
        self.show_all_button.setVisible(False)
        layout.addWidget(self.show_all_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._collapsed = True
        self.blocks = QVBoxLayout()          # blocks other parts of the app add (tool output, attachments)
        self.blocks.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.blocks)
        self.note_label = QLabel("")  # why a reply ended early (length limit, tool call)
        self.note_label.setObjectName("note")
        self.note_label.setProperty("muted", True)
        self.note_label.setWordWrap(True)
        self.note_label.setAccessibleName("Note")
        self.note_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note_label.setVisible(False)
        layout.addWidget(self.note_label)

        self.status_shown = "done"
        self.editor: QPlainTextEdit | None = None
        self._edit_row: QWidget | None = None
        self.set_siblings(1, 1)

    def _tool(self, text: str, name: str, slot: Callable[[], None]) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(name)
        b.setAccessibleName(name)
        b.setAutoRaise(True)
        b.clicked.connect(slot)
        return b

    # ------------------------------------------------------------------ content

    @property
    def reasoning_view(self) -> AutoHeightBrowser:
        if self._reasoning_view is None:
            self._reasoning_view = AutoHeightBrowser()
            self._reasoning_view.setAccessibleName("Reasoning text")
            self.reasoning_frame.layout().addWidget(self._reasoning_view)
        return self._reasoning_view

    @property
    def text(self) -> str:
        return self._text

    @property
    def reasoning(self) -> str:
        return self._reasoning

    @property
    def code_blocks(self) -> tuple[str, ...]:
        return tuple(self._code) + (self._rendered.code_blocks if self.tail.isVisible() else ())

    @property
    def tool_calls(self) -> list[tuple[str, str]]:
        """(recipient, arguments) of each tool call shown."""
        return list(self._tool_calls)

    def set_tool_calls(self, calls: list[tuple[str, str]]) -> None:
        """Show each tool call as a collapsed "Tool call: functions.x" block (arguments inside)."""
        calls = [(str(r), str(a)) for r, a in calls]
        if calls == self._tool_calls:
            return
        self._tool_calls = calls
        while len(self.tool_call_toggles) < len(calls):
            toggle = QToolButton()
            toggle.setObjectName("toolCallToggle")
            toggle.setCheckable(True)
            toggle.setAutoRaise(True)
            toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            toggle.setAccessibleName("Show or hide the tool call's arguments")
            view = AutoHeightBrowser()
            view.setObjectName("toolCallArguments")
            view.setAccessibleName("Tool call arguments")
            view.setVisible(False)
            toggle.toggled.connect(lambda checked, i=len(self.tool_call_toggles): self._on_tool_call_toggled(i))
            self._tool_layout.addWidget(toggle)
            self._tool_layout.addWidget(view)
            self.tool_call_toggles.append(toggle)
            self.tool_call_views.append(view)
        for i, (toggle, view) in enumerate(zip(self.tool_call_toggles, self.tool_call_views)):
            shown = i < len(calls)
            toggle.setVisible(shown)
            if shown:
                view.setHtml(f"<pre style=\"white-space: pre-wrap; margin: 0px;\">{html.escape(calls[i][1])}</pre>")
            view.setVisible(shown and toggle.isChecked())
            self._update_tool_call_title(i)
        self.tool_calls_frame.setVisible(bool(calls))

    @property
    def tool_blocks(self) -> Any:
        """The blocks of the tools Lantern ran (browser, python): call and result, collapsible; made on
        first use, under the plain tool calls (most messages never need one)."""
        if self._tool_blocks is None:
            from app.widgets.tool_block import ToolBlocks

            self._tool_blocks = ToolBlocks()
            self._tool_blocks.approval_answered.connect(self.approval_answered)
            layout = self.layout()
            assert isinstance(layout, QVBoxLayout)
            layout.insertWidget(layout.indexOf(self.tool_calls_frame) + 1, self._tool_blocks)
        return self._tool_blocks

    def set_tool_rounds(self, rounds: list[dict[str, Any]], pending: tuple[int, str] | None = None) -> None:
        """Tool calls that Lantern ran (they carry results) or that wait for approval: shown as tool blocks
        in place of the plain tool-call blocks."""
        ran = any("result" in r for r in rounds) or pending is not None
        if not ran and self._tool_blocks is None:
            return
        if ran:
            self.tool_calls_frame.setVisible(False)
        self.tool_blocks.set_rounds(rounds if ran else [], pending)

    def _update_tool_call_title(self, i: int) -> None:
        toggle = self.tool_call_toggles[i]
        recipient = self._tool_calls[i][0] if i < len(self._tool_calls) else ""
        toggle.setText(f"{'▾' if toggle.isChecked() else '▸'} {TOOL_CALL_LABEL}: {recipient}")

    def _on_tool_call_toggled(self, i: int) -> None:
        self.tool_call_views[i].setVisible(self.tool_call_toggles[i].isChecked() and i < len(self._tool_calls))
        self._update_tool_call_title(i)

    def add_block(self, widget: QWidget) -> None:
        """A block of another part of the app, under the text (e.g. a tool's output)."""
        self.blocks.addWidget(widget)

    def set_text(self, text: str, *, streaming: bool = False) -> None:
        """Re-render the body: Markdown for the model's replies (incrementally while `streaming`),
        the text as typed for the user's, collapsed to its first lines when it is long."""
        if text == self._text and (self._rendered.html or self.role == "user"):
            return
        self._text = text
        if self.role == "user":
            self._show_user_text()
            self.body.setVisible(True)
            return
        blocks, tail = split_blocks(text, streaming=streaming)
        if not streaming:
            blocks, tail = blocks + ([tail] if tail.strip() else []), ""
        if blocks[:len(self._blocks)] != self._blocks:   # not a continuation of what is shown: start over
            self.body.clear()
            self._blocks, self._code, self._math_pending = [], [], False
        cursor: QTextCursor | None = None
        for block in blocks[len(self._blocks):]:
            # each block is rendered once, its citations linked with it (no whole-reply pass per update)
            rendered = render_markdown(link_citations(block), self._palette, first_code=len(self._code))
            if cursor is None:
                cursor = QTextCursor(self.body.document())
                cursor.movePosition(QTextCursor.MoveOperation.End)
            if self._blocks:
                cursor.insertBlock()
            cursor.insertHtml(rendered.html)
            self._blocks.append(block)
            self._code.extend(rendered.code_blocks)
            self._math_pending = self._math_pending or rendered.math_pending
        if tail.strip():
            if tail != self._tail_text:
                open_fence = tail.count("```") % 2 == 1   # a code block being written: highlighted when closed
                self._rendered = render_markdown(link_citations(tail), self._palette, highlight=not open_fence,
                                                 first_code=len(self._code))
                self.tail.setHtml(self._rendered.html)
                self._tail_text = tail
            self.tail.setVisible(True)
        else:
            self._rendered, self._tail_text = Rendered("", ()), None
            self.tail.setVisible(False)
        self.body.setVisible(bool(self._blocks))

    def refresh_math(self) -> None:
        """Formulas that were still being drawn are ready: render the text again (no-op otherwise)."""
        if self.role == "user" or not (self._math_pending or self._rendered.math_pending):
            return
        text, streaming = self._text, self.status_shown == "streaming"
        self._text, self._blocks, self._tail_text, self._math_pending = "\x00", [], None, False
        self.body.clear()
        self.set_text(text, streaming=streaming)

    def _show_user_text(self) -> None:
        preview = collapsed_preview(self._text) if self._collapsed else None
        self.body.setPlainText(preview if preview is not None else self._text)
        long = collapsed_preview(self._text) is not None
        lines = self._text.count("\n") + 1
        self.show_all_button.setText(f"Show all ({lines:,} lines, {len(self._text):,} characters)"
                                     if self._collapsed else "Show less")
        self.show_all_button.setVisible(long)

    @property
    def collapsed(self) -> bool:
        return self.role == "user" and self._collapsed and collapsed_preview(self._text) is not None

    def toggle_collapsed(self) -> None:
        self._collapsed = not self._collapsed
        self._show_user_text()

    def set_progress(self, text: str | None) -> None:
        """What the reply is doing before it has text ("Reading your message… 43 % …"); None hides it."""
        self.progress_label.setText(text or "")
        self.progress_label.setVisible(bool(text))

    def set_reasoning(self, text: str, *, thinking: bool, thought_seconds: float | None,
                      thinking_since: float | None = None) -> None:
        """Show the analysis text. While `thinking` it is expanded and live; afterwards collapsed.
        `thinking_since` (time.monotonic) lets the header count the seconds while it thinks."""
        self._reasoning = text
        self._thinking_since = thinking_since
        has = bool(text)
        self.reasoning_toggle.setVisible(has)
        if not has:
            self.reasoning_frame.setVisible(False)
            return
        was_thinking, self._thinking = self._thinking, thinking
        self._thought_seconds = thought_seconds
        shown = getattr(self, "_reasoning_shown", "")
        if text.startswith(shown) and shown:   # streaming: add the new text only (its layout grows, not redone)
            if len(text) > len(shown):
                cursor = QTextCursor(self.reasoning_view.document())
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(text[len(shown):])
        else:
            self.reasoning_view.setHtml(render_plain(text, self._palette))
        self._reasoning_shown = text
        if thinking and not was_thinking:
            self.reasoning_toggle.setChecked(self._show_reasoning)
        elif was_thinking and not thinking:
            self.reasoning_toggle.setChecked(False)  # the answer started: fold the reasoning away
        self._update_reasoning_title()
        self.reasoning_frame.setVisible(self._show_reasoning and self.reasoning_toggle.isChecked())

    def _update_reasoning_title(self) -> None:
        arrow = "▾" if self.reasoning_toggle.isChecked() else "▸"
        if self._thinking:
            since = getattr(self, "_thinking_since", None)
            state = f"Thinking… {int(time.monotonic() - since)} s" if since is not None else "Thinking…"
        elif self._thought_seconds is not None:
            state = f"Thought for {max(1, round(self._thought_seconds))} s"
        else:
            state = "Reasoning"
        label = f"{arrow} {state} · {REASONING_LABEL}" if self._show_reasoning else state
        self.reasoning_toggle.setText(label)
        self.reasoning_toggle.setEnabled(self._show_reasoning)

    def tick_thinking(self) -> bool:
        """Refresh the "Thinking… N s" header alone. False once it is not thinking any more."""
        if not self._thinking or not self._reasoning:
            return False
        self._update_reasoning_title()
        return True

    def set_origin(self, model: str | None, remote_host: str | None) -> None:
        """Mark a reply a remote model wrote with an "on <host>" badge (nothing for this computer)."""
        from app.remote.labels import badge_text, reply_origin_tooltip

        self.origin_label.setVisible(bool(remote_host))
        if remote_host:
            self.origin_label.setText(badge_text(remote_host))
            self.origin_label.setToolTip(reply_origin_tooltip(model, remote_host))
            self.origin_label.setAccessibleName(f"Remote reply, {badge_text(remote_host)}")
            self.origin_label.setStyleSheet("QLabel#originBadge{background:#1f4e99;color:white;border-radius:7px;"
                                            "padding:1px 7px;font-weight:600;}")

    def set_note(self, text: str | None) -> None:
        self.note_label.setText(text or "")
        self.note_label.setVisible(bool(text))

    def _on_reasoning_toggled(self, checked: bool) -> None:
        self.reasoning_frame.setVisible(checked and self._show_reasoning and bool(self._reasoning))
        self._update_reasoning_title()

    def set_status(self, status: str, error: str | None = None, *, interrupted: bool = False,
                   bug: bool = False) -> None:
        """`interrupted`: cut off because Lantern closed (a crash), not stopped by the user; `bug`:
        an error that is Lantern's fault, not the user's."""
        key = (status, error, interrupted, bug)
        if key == getattr(self, "_status_key", None):
            return                      # (called on every streamed update: restyling is not free)
        self._status_key = key
        self.status_shown = "interrupted" if interrupted and status == "stopped" else status
        text = {"stopped": "· stopped", "error": "· error", "streaming": "· writing…"}.get(status, "")
        self.status_label.setObjectName("")
        self.status_label.setToolTip("")
        if self.status_shown == "interrupted":
            text = CUT_OFF_TEXT
            self.status_label.setObjectName("interrupted")
            self.status_label.setToolTip("Lantern closed (a crash, a kill or a power cut) while writing this reply; "
                                         "it is kept as far as it got. Regenerate writes a new one.")
        elif status == "stopped":
            self.status_label.setToolTip("You stopped this reply.")
        elif status == "error":
            what = "a bug in Lantern" if bug else "error"
            text = f"· {what}: {error}" if error else f"· {what}"
            self.status_label.setObjectName("error")
            self.status_label.setToolTip(error or "")
        self.status_label.setText(text)
        self.status_label.style().unpolish(self.status_label)
        self.status_label.style().polish(self.status_label)
        self.regenerate_button.setEnabled(status != "streaming")

    def set_siblings(self, index: int, count: int) -> None:
        """index is 1-based."""
        many = count > 1
        for w in (self.prev_button, self.sibling_label, self.next_button):
            w.setVisible(many)
        self.sibling_label.setText(f"{index}/{count}")
        self.sibling_label.setAccessibleName(f"Version {index} of {count}")

    def set_actions_enabled(self, enabled: bool) -> None:
        for b in (self.edit_button, self.regenerate_button, self.prev_button, self.next_button):
            b.setEnabled(enabled)

    # ------------------------------------------------------------------ actions

    def copy_message(self) -> None:
        QGuiApplication.clipboard().setText(self._text)

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME:
            index = int(url.path() or url.toString().split(":", 1)[1])
            code = self.code_blocks
            if 0 <= index < len(code):
                QGuiApplication.clipboard().setText(code[index])
        elif url.scheme() == CITE_SCHEME:
            cited = parse_citation_url(url)
            if cited is not None:
                self.citation_clicked.emit(self.message_id, *cited)
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)

    def begin_edit(self) -> None:
        if self.editor is not None:
            return
        self.editor = QPlainTextEdit(self._text)
        self.editor.setAccessibleName("Edit message")
        self.editor.setFixedHeight(max(60, min(240, self.body.height() + 20)))
        row = QWidget()
        buttons = QHBoxLayout(row)
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addStretch(1)
        cancel = QPushButton("Cancel")
        send = QPushButton("Save && send")
        send.setDefault(True)
        cancel.clicked.connect(self.end_edit)
        send.clicked.connect(self._submit_edit)
        buttons.addWidget(cancel)
        buttons.addWidget(send)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.addWidget(self.editor)
        layout.addWidget(row)
        self._edit_row = row
        self.body.setVisible(False)
        self.editor.setFocus()

    def _submit_edit(self) -> None:
        if self.editor is None:
            return
        text = self.editor.toPlainText()
        self.end_edit()
        if text.strip() and text.strip() != self._text.strip():
            self.edit_submitted.emit(self.message_id, text)

    def end_edit(self) -> None:
        for w in (self.editor, self._edit_row):
            if w is not None:
                w.setParent(None)
                w.deleteLater()
        self.editor, self._edit_row = None, None
        self.body.setVisible(True)
