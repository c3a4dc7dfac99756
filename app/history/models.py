"""Plain, immutable records returned by the history store (no Qt, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "developer", "system", "tool"]
Status = Literal["streaming", "done", "stopped", "error"]
STATUSES: tuple[str, ...] = ("streaming", "done", "stopped", "error")
ROLES: tuple[str, ...] = ("user", "assistant", "developer", "system", "tool")

# Set as `error` on a reply found still "streaming" when the database is opened: the app died
# (crash, kill, power loss) while it was being written. Its status becomes "stopped".
INTERRUPTED_NOTE = "Interrupted: Lantern closed before this reply finished."

TOOL_CALLS_KEY = "tool_calls"
"""A reply's tool calls are kept in its usage JSON under this key, as a list of
{"recipient": "functions.x", "arguments": "<the JSON text the model wrote>"}: they are neither
the answer (`content`) nor reasoning, and Lantern runs no tools, so they never go back to the model."""


def tool_calls_of(usage: Any) -> list[tuple[str, str]]:
    """(recipient, arguments) of each tool call stored in a message's usage dict (tolerant of bad data)."""
    calls = usage.get(TOOL_CALLS_KEY) if isinstance(usage, dict) else None
    if not isinstance(calls, list):
        return []
    return [(str(c.get("recipient", "")), str(c.get("arguments", ""))) for c in calls if isinstance(c, dict)]


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str | None  # None until set by hand or from the first user message
    created_at: float  # unix seconds, UTC
    updated_at: float  # unix seconds; bumped by every message added or edited, and by rename
    active_leaf_id: int | None  # the message the window shows last; None for an empty chat


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    parent_id: int | None  # None for a first message; siblings share a parent
    role: str
    channel: str | None  # harmony channel of the text, e.g. "final"; None when not applicable
    content: str  # the text; for an assistant reply, the final answer only
    reasoning: str  # assistant: the analysis-channel text ("" when none)
    status: str  # one of STATUSES
    error: str | None  # why a reply failed, or INTERRUPTED_NOTE
    usage: dict[str, Any] | None  # per-reply usage numbers (engine.types.Usage as a dict)
    created_at: float  # unix seconds
    model: str | None = None  # assistant: the model that wrote it (None: not recorded, older replies)
    remote_host: str | None = None  # assistant: the server it ran on ("gpu-box:8000"); None: this computer


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str | None
    message_id: int | None  # None when the title matched
    field: Literal["title", "content", "reasoning"]
    role: str | None  # the message's role; None for a title hit
    snippet: str  # plain text around the match, "…" where cut
    highlights: tuple[tuple[int, int], ...] = field(default=())  # [start, end) of each match in snippet
    created_at: float = 0.0  # the message's time (for a title hit: the conversation's updated_at)
