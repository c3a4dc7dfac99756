"""A reply's tool calls as collapsible blocks (like the reasoning): what was called, and what came back.

`ToolBlocks.set_rounds(rounds, pending)` shows one block per call (`rounds` as stored: recipient,
arguments, and once run author, result, status). A python call waiting for the user shows the code,
expanded, with "Run", "Allow for this chat" and "Don't run"; the answer is `approval_answered`.
"""

from __future__ import annotations

import html
import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

MAX_SHOWN_CHARS = 20_000


def block_title(call: dict[str, Any], waiting: bool) -> str:
    """E.g. `Python · ran`, `Browser · search “leave days”`."""
    recipient = call.get("recipient", "")
    status = call.get("status")
    try:
        args = json.loads(call.get("arguments") or "{}")
    except ValueError:
        args = {}
    args = args if isinstance(args, dict) else {}
    if recipient == "python" or recipient.endswith(".python"):
        state = ("waiting for your approval" if waiting else "not run (you said no)" if status == "denied"
                 else "error" if status == "error" else "ran" if status == "ok" else "running…")
        return f"Python · {state}"
    if recipient.startswith("browser."):
        fn = recipient.split(".", 1)[1]
        if fn == "open":
            link, loc = args.get("id", -1), args.get("loc", -1)
            parts = [f"result {link}" if isinstance(link, int) and link >= 0 else
                     str(link) if isinstance(link, str) and link else "the page"]
            if isinstance(loc, int) and loc >= 0:
                parts.append(f"at line {loc}")
            detail = " " + " ".join(parts)
        else:
            what = args.get("query") if fn == "search" else args.get("pattern") if fn == "find" else None
            detail = f" “{what}”" if isinstance(what, str) and what else ""
        return f"Browser · {fn}{detail}" + (" · error" if status == "error" else "")
    return f"Tool call: {recipient}" + (" · not available" if status == "error" else "")


def _pre(text: str) -> str:
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + f"\n… ({len(text) - MAX_SHOWN_CHARS:,} more characters)"
    return (f'<pre style="white-space: pre-wrap; margin: 0px; font-family: monospace;">{html.escape(text)}</pre>')


class ToolBlock(QFrame):
    approval_answered = Signal(bool, bool)      # allow, always (for this chat)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolBlock")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.toggle = QToolButton()
        self.toggle.setObjectName("toolBlockToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toggle.setAccessibleName("Show or hide the tool call")
        self.toggle.toggled.connect(self._on_toggled)
        layout.addWidget(self.toggle)
        self.body = QFrame()
        self.body.setObjectName("toolBlockBody")
        body = QVBoxLayout(self.body)
        body.setContentsMargins(12, 0, 0, 4)
        from app.widgets.message_widget import AutoHeightBrowser

        self.call_view = AutoHeightBrowser()
        self.call_view.setAccessibleName("Tool call")
        self.output_label = QLabel("Result")
        self.output_label.setProperty("muted", True)
        self.output_view = AutoHeightBrowser()
        self.output_view.setAccessibleName("Tool result")
        body.addWidget(self.call_view)
        body.addWidget(self.output_label)
        body.addWidget(self.output_view)
        self.approval_row = QWidget()
        row = QHBoxLayout(self.approval_row)
        row.setContentsMargins(0, 2, 0, 2)
        self.approval_label = QLabel("Run this code on this computer?")
        self.run_button = QPushButton("Run")
        self.always_button = QPushButton("Allow for this chat")
        self.deny_button = QPushButton("Don't run")
        self.run_button.setAccessibleName("Run the code once")
        self.always_button.setAccessibleName("Run this and later code in this chat without asking")
        self.deny_button.setAccessibleName("Do not run the code")
        self.run_button.clicked.connect(lambda: self.approval_answered.emit(True, False))
        self.always_button.clicked.connect(lambda: self.approval_answered.emit(True, True))
        self.deny_button.clicked.connect(lambda: self.approval_answered.emit(False, False))
        row.addWidget(self.approval_label)
        row.addStretch(1)
        for b in (self.run_button, self.always_button, self.deny_button):
            row.addWidget(b)
        body.addWidget(self.approval_row)
        layout.addWidget(self.body)
        self.body.setVisible(False)
        self.call: dict[str, Any] = {}
        self.waiting = False
        self._shown: tuple[Any, ...] = ()

    def show_call(self, call: dict[str, Any], waiting: bool) -> None:
        key = (call.get("recipient"), call.get("arguments"), call.get("result"), call.get("status"), waiting)
        if key == self._shown:
            return
        was_waiting, self._shown, self.call, self.waiting = self.waiting, key, dict(call), waiting
        code = call.get("arguments", "")
        self.call_view.setHtml(_pre(code))
        has_result = "result" in call
        self.output_label.setVisible(has_result)
        self.output_view.setVisible(has_result)
        if has_result:
            self.output_view.setHtml(_pre(call.get("result", "")))
        self.approval_row.setVisible(waiting)
        if waiting and not was_waiting:
            self.toggle.setChecked(True)          # the code the user is asked about is shown
        elif was_waiting and not waiting:
            self.toggle.setChecked(False)         # answered: folded away like finished reasoning
        self._title()
        self.body.setVisible(self.toggle.isChecked())

    def _title(self) -> None:
        arrow = "▾" if self.toggle.isChecked() else "▸"
        self.toggle.setText(f"{arrow} {block_title(self.call, self.waiting)}")

    def _on_toggled(self, checked: bool) -> None:
        self.body.setVisible(checked)
        self._title()


class ToolBlocks(QWidget):
    approval_answered = Signal(bool, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolBlocks")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self.blocks: list[ToolBlock] = []
        self.setVisible(False)

    def set_rounds(self, rounds: list[dict[str, Any]], pending: tuple[int, str] | None = None) -> None:
        while len(self.blocks) < len(rounds):
            block = ToolBlock()
            block.approval_answered.connect(self.approval_answered)
            self._layout.addWidget(block)
            self.blocks.append(block)
        for i, block in enumerate(self.blocks):
            shown = i < len(rounds)
            block.setVisible(shown)
            if shown:
                waiting = (pending is not None and i == len(rounds) - 1 and "result" not in rounds[i]
                           and rounds[i].get("recipient") == "python")
                block.show_call(rounds[i], waiting)
        self.setVisible(bool(rounds))
