"""Plain, immutable records returned by the history store (no Qt, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "developer", "system", "tool"]
Status = Literal["streaming", "done", "stopped", "error"]
STATUSES: tuple[str, ...] = ("streaming", "done", "stopped", "error")
ROLES: tuple[str, ...] = ("user", "assistant", "developer", "system", "tool")

# Set as `error` on a reply found still "streaming" when the database is opened: the app died
# (crash, kill, power loss) while it was being written. Its status becomes "stopped" and its
# finish_reason "interrupted" (a reply the user stopped has finish_reason "cancelled").
INTERRUPTED_NOTE = "Interrupted: Lantern closed before this reply finished."
INTERRUPTED = "interrupted"
"""finish_reason of a reply cut off because Lantern closed while writing it."""

TOOL_CALLS_KEY = "tool_calls"
"""Version-1 export files (and v2 databases) kept a reply's tool calls in its usage under this key."""

ToolCalls = tuple[tuple[str, str], ...]
"""(recipient, arguments) of each tool call: neither the answer (`content`) nor reasoning."""

ToolRound = dict[str, str]
"""One tool call as stored (the `tool_calls_json` column, the export's `tool_calls`): "recipient" and
"arguments" (the text the model wrote), plus, once Lantern ran the tool (browser, python;
app/tools_controller.py), "author" (the tool message's author), "result" (what the model was given)
and "status" ("ok" | "denied" | "error")."""

TOOL_ROUND_KEYS = ("recipient", "arguments", "author", "result", "status")


def tool_calls_of(data: Any) -> list[tuple[str, str]]:
    """(recipient, arguments) from a list of {"recipient", "arguments"} (or a v1 usage dict holding one)."""
    calls = data.get(TOOL_CALLS_KEY) if isinstance(data, dict) else data
    if not isinstance(calls, list):
        return []
    return [(str(c.get("recipient", "")), str(c.get("arguments", ""))) for c in calls if isinstance(c, dict)]


def tool_rounds_of(data: Any) -> list[ToolRound]:
    """Each call of a stored list of tool calls (or of a v1 usage dict holding one) as a ToolRound."""
    calls = data.get(TOOL_CALLS_KEY) if isinstance(data, dict) else data
    if not isinstance(calls, list):
        return []
    return [{k: str(c[k]) for k in TOOL_ROUND_KEYS if k in c} for c in calls if isinstance(c, dict)]


def tool_calls_json(calls: Any) -> list[dict[str, str]] | None:
    """The stored form of tool calls, given as (recipient, arguments) pairs or as ToolRounds (whose
    results are kept); None when there are none."""
    out: list[dict[str, str]] = []
    for call in calls or ():
        if isinstance(call, dict):
            out.append({"recipient": str(call.get("recipient", "")), "arguments": str(call.get("arguments", "")),
                        **{k: str(call[k]) for k in TOOL_ROUND_KEYS[2:] if k in call}})
        else:
            recipient, arguments = call
            out.append({"recipient": str(recipient), "arguments": str(arguments)})
    return out or None


def rounds_of(message: Any) -> list[ToolRound]:
    """A stored message's tool calls with their results where Lantern ran them."""
    rounds = getattr(message, "tool_rounds", ())
    if rounds:
        return [dict(r) for r in rounds]
    return [{"recipient": r, "arguments": a} for r, a in getattr(message, "tool_calls", ())]


@dataclass(frozen=True)
class ChatSettings:
    """A conversation's own settings; None means "the default from Settings"."""

    reasoning_effort: str | None = None
    instructions: str | None = None

    def to_json(self) -> dict[str, str] | None:
        data = {k: v for k, v in (("reasoning_effort", self.reasoning_effort), ("instructions", self.instructions))
                if v is not None}
        return data or None

    @classmethod
    def from_json(cls, data: Any) -> "ChatSettings":
        if not isinstance(data, dict):
            return cls()
        effort = data.get("reasoning_effort")
        instructions = data.get("instructions")
        return cls(effort if effort in ("low", "medium", "high") else None,
                   instructions if isinstance(instructions, str) else None)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str | None  # None until set by hand or from the first user message
    created_at: float  # unix seconds, UTC
    updated_at: float  # unix seconds; bumped by every message added or edited, and by rename
    active_leaf_id: int | None  # the message the window shows last; None for an empty chat
    settings: ChatSettings = field(default_factory=ChatSettings)  # this chat's effort/instructions


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
    usage: dict[str, Any] | None  # per-reply usage numbers (engine.types.Usage as a dict, + thought_seconds)
    created_at: float  # unix seconds
    tool_calls: ToolCalls = ()  # a reply's tool calls
    finish_reason: str | None = None  # why a reply ended (engine reason, or INTERRUPTED); None: not a reply
    model: str | None = None  # assistant: the model that wrote it (None: not recorded, older replies)
    remote_host: str | None = None  # assistant: the server it ran on ("gpu-box:8000"); None: this computer
    tool_rounds: tuple[ToolRound, ...] = ()  # the same calls with their results, for the tools Lantern ran
    browser_pages: tuple[dict[str, Any], ...] = ()  # the browser's cursor pages of the reply (its citations)

    @property
    def interrupted(self) -> bool:
        """Cut off because Lantern closed while writing it (not stopped by the user)."""
        return self.finish_reason == INTERRUPTED


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
