"""Worker -> GUI events of a reply that uses tools (with app/messages.py's events on the same signal).

Qt-free and torch-free. Each carries the request id of its StartChat, so a stale turn's events are
dropped like its deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The model called a tool (its arguments streamed as deltas just before)."""

    request_id: int
    call_id: int
    recipient: str                 # as the model wrote it: "browser.search", "python", ...
    kind: str                      # "browser" | "python" | "function" | "unknown"
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolApprovalNeeded:
    """Python wants to run `code`: the worker waits for EngineWorker.answer_approval."""

    request_id: int
    call_id: int
    code: str


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    request_id: int
    call_id: int
    author: str                    # the tool message's author ("browser.open", "python")
    output: str                    # what the model was given
    status: str                    # "ok" | "denied" | "error"
    browser_pages: tuple[dict[str, Any], ...] = field(default=())   # the cursor stack so far (citations)


ToolEvent = ToolCallEvent | ToolApprovalNeeded | ToolResultEvent
