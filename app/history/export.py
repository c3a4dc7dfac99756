"""Conversation export (Markdown, JSON) and validation of JSON to import. Pure functions, no SQL.

JSON format ``lantern.conversation`` version 2: the whole message tree, every branch, plus the
active leaf and the chat's own settings; each reply carries its ``tool_calls`` (with ``author``,
``result`` and ``status`` for a tool Lantern ran, and then ``browser_pages``) and ``finish_reason``
(version 1 kept those two inside ``usage``; such files still import, and are moved the same way the
database's v3 migration moves them). Message ids in the file are local to the file (1..n in the order the messages were
written, parents before children), so exporting an imported conversation gives the same JSON
again: ``export(import(export(x))) == export(x)`` exactly, although the database ids differ.
A reply still streaming when exported is written as "stopped" (the file holds what was there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.history.errors import ImportFormatError
from app.history.models import (
    INTERRUPTED,
    INTERRUPTED_NOTE,
    ROLES,
    STATUSES,
    ChatSettings,
    Conversation,
    StoredMessage,
    ToolCalls,
    ToolRound,
    rounds_of,
    tool_calls_json,
    tool_calls_of,
    tool_rounds_of,
)

FORMAT = "lantern.conversation"
FORMAT_VERSION = 2
FINISH_REASONS = ("stop", "length", "tool_call", "cancelled", "error", INTERRUPTED)


@dataclass(frozen=True)
class ImportedMessage:
    local_id: int
    parent: int | None
    role: str
    channel: str | None
    content: str
    reasoning: str
    status: str
    error: str | None
    usage: dict[str, Any] | None
    created_at: float
    tool_calls: ToolCalls = ()
    finish_reason: str | None = None
    model: str | None = None
    remote_host: str | None = None
    tool_rounds: tuple[ToolRound, ...] = ()      # the calls with the results of the tools Lantern ran
    browser_pages: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ImportedConversation:
    title: str | None
    created_at: float
    updated_at: float
    active_leaf: int | None
    messages: tuple[ImportedMessage, ...]  # parents before children
    settings: ChatSettings = ChatSettings()


def to_json(conversation: Conversation, messages: Sequence[StoredMessage]) -> dict[str, Any]:
    """``messages``: every message of the conversation, in database id order (parents first)."""
    local = {m.id: i for i, m in enumerate(messages, start=1)}
    out_messages = []
    for m in messages:
        assert m.parent_id is None or m.parent_id in local, "parent written after its child"
        entry = {
            "id": local[m.id],
            "parent": None if m.parent_id is None else local[m.parent_id],
            "role": m.role,
            "channel": m.channel,
            "content": m.content,
            "reasoning": m.reasoning,
            "status": "stopped" if m.status == "streaming" else m.status,
            "error": m.error,
            "usage": m.usage,
            "created_at": m.created_at,
            "tool_calls": tool_calls_json(m.tool_rounds or m.tool_calls) or [],
            "finish_reason": INTERRUPTED if m.status == "streaming" else m.finish_reason,
        }
        # Which model (and server) wrote a reply: written only when known, so older files stay as they were.
        for key in ("model", "remote_host"):
            if getattr(m, key, None):
                entry[key] = getattr(m, key)
        if m.browser_pages:
            entry["browser_pages"] = [dict(p) for p in m.browser_pages]
        out_messages.append(entry)
    leaf = conversation.active_leaf_id
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "active_leaf": None if leaf is None else local[leaf],
        "settings": conversation.settings.to_json(),
        "messages": out_messages,
    }


def _fail(where: str, what: str) -> ImportFormatError:
    return ImportFormatError(f"Not a Lantern conversation file: {where} {what}.")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, "must be a number (unix seconds)")
    return float(value)


def _text(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(where, "must be text" + (" or null" if optional else ""))
    return value


def parse_json(data: Any) -> ImportedConversation:
    """Validate an export (already decoded from JSON). Raises ImportFormatError saying what is wrong."""
    if not isinstance(data, Mapping):
        raise _fail("the top level", "must be an object")
    if data.get("format") != FORMAT:
        raise _fail('"format"', f'must be "{FORMAT}"')
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail('"version"', "must be a positive integer")
    if version > FORMAT_VERSION:
        raise ImportFormatError(
            f"This conversation file has format version {version}; this Lantern reads up to {FORMAT_VERSION}."
        )
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise _fail('"messages"', "must be a list")
    seen: set[int] = set()
    messages: list[ImportedMessage] = []
    for i, raw in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(raw, Mapping):
            raise _fail(where, "must be an object")
        local_id = raw.get("id")
        if not isinstance(local_id, int) or isinstance(local_id, bool) or local_id in seen:
            raise _fail(f"{where}.id", "must be an integer not used before")
        parent = raw.get("parent")
        if parent is not None and parent not in seen:
            raise _fail(f"{where}.parent", "must be null or the id of an earlier message")
        role = raw.get("role")
        if role not in ROLES:
            raise _fail(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        status = raw.get("status", "done")
        if status not in STATUSES or status == "streaming":
            raise _fail(f"{where}.status", "must be done, stopped or error")
        usage = raw.get("usage")
        if usage is not None and not isinstance(usage, Mapping):
            raise _fail(f"{where}.usage", "must be an object or null")
        usage = None if usage is None else dict(usage)
        error = _text(raw.get("error"), f"{where}.error", optional=True)
        pages = raw.get("browser_pages", [])
        if not isinstance(pages, list) or not all(isinstance(p, Mapping) for p in pages):
            raise _fail(f"{where}.browser_pages", "must be a list of objects")
        if version == 1:   # tool calls and the finish reason rode inside usage
            rounds = tool_rounds_of(usage.get("tool_calls", None)) if usage is not None else []
            calls = tool_calls_of(usage.pop("tool_calls", None)) if usage is not None else []
            reason = usage.pop("finish_reason", None) if usage is not None else None
            if role == "assistant":
                reason = {"stopped": INTERRUPTED if error == INTERRUPTED_NOTE else "cancelled",
                          "error": "error"}.get(status, reason if reason in ("length", "tool_call") else "stop")
            else:
                reason = None
        else:
            raw_calls = raw.get("tool_calls", [])
            if not isinstance(raw_calls, list):
                raise _fail(f"{where}.tool_calls", "must be a list")
            calls = tool_calls_of(raw_calls)
            rounds = tool_rounds_of(raw_calls)
            reason = raw.get("finish_reason")
            if reason is not None and reason not in FINISH_REASONS:
                raise _fail(f"{where}.finish_reason", f"must be null or one of {', '.join(FINISH_REASONS)}")
        messages.append(ImportedMessage(
            local_id=local_id,
            parent=parent,
            role=role,
            channel=_text(raw.get("channel"), f"{where}.channel", optional=True),
            content=_text(raw.get("content", ""), f"{where}.content") or "",
            reasoning=_text(raw.get("reasoning", ""), f"{where}.reasoning") or "",
            status=status,
            error=error,
            usage=usage,
            created_at=_number(raw.get("created_at"), f"{where}.created_at"),
            tool_calls=tuple(calls),
            finish_reason=reason,
            model=_text(raw.get("model"), f"{where}.model", optional=True),
            remote_host=_text(raw.get("remote_host"), f"{where}.remote_host", optional=True),
            tool_rounds=tuple(rounds),
            browser_pages=tuple(dict(p) for p in pages),
        ))
        seen.add(local_id)
    active = data.get("active_leaf")
    if active is not None and active not in seen:
        raise _fail('"active_leaf"', "must be null or the id of a message")
    return ImportedConversation(
        title=_text(data.get("title"), '"title"', optional=True),
        created_at=_number(data.get("created_at"), '"created_at"'),
        updated_at=_number(data.get("updated_at"), '"updated_at"'),
        active_leaf=active,
        messages=tuple(messages),
        settings=ChatSettings.from_json(data.get("settings")),
    )


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


_ROLE_NAMES = {"user": "You", "assistant": "Assistant", "developer": "Instructions", "system": "System", "tool": "Tool"}


def to_markdown(conversation: Conversation, thread: Sequence[StoredMessage], total_messages: int) -> str:
    """The active branch (root to active leaf) as Markdown; reasoning in a collapsed <details> block."""
    title = conversation.title or "Untitled conversation"
    lines = [f"# {title}", ""]
    note = f"*Exported from Lantern. Started {_when(conversation.created_at)}.*"
    others = total_messages - len(thread)
    if others > 0:
        more = "1 more message is" if others == 1 else f"{others} more messages are"
        note += f" *This file shows the active branch; {more} in other branches (see the JSON export).*"
    lines += [note, ""]
    for m in thread:
        origin = f" ({m.model} on {m.remote_host})" if getattr(m, "remote_host", None) else ""
        lines += [f"## {_ROLE_NAMES.get(m.role, m.role.title())}{origin} · {_when(m.created_at)}", ""]
        if m.reasoning:
            lines += ["<details><summary>Reasoning (unfiltered chain of thought)</summary>", "",
                      m.reasoning.rstrip("\n"), "", "</details>", ""]
        for call in rounds_of(m):
            recipient, arguments = call.get("recipient", ""), call.get("arguments", "")
            fence = "python" if recipient == "python" else "json"
            lines += [f"<details><summary>Tool call: {recipient}</summary>", "", f"```{fence}", arguments, "```", ""]
            if "result" in call:
                lines += [f"Result ({call.get('status', 'ok')}):", "", "```text", call["result"].rstrip("\n"), "```",
                          ""]
            lines += ["</details>", ""]
        if m.content:
            lines += [m.content.rstrip("\n"), ""]
        if m.status == "streaming" or m.finish_reason == INTERRUPTED:
            lines += ["*(reply cut off: Lantern closed before it finished)*", ""]
        elif m.status == "stopped":
            lines += ["*(reply stopped before it finished)*", ""]
        elif m.status == "error":
            lines += [f"*(error: {m.error or 'unknown'})*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
