"""Chat Completions chunks -> Lantern's `Delta` events, the finish reason and the token counts.

Field names differ between servers (docs/remote-servers.md): the reasoning comes as
`delta.reasoning` (vLLM now, Ollama, LM Studio, the OpenRouter convention) or
`delta.reasoning_content` (llama-server, older vLLM); both are read, and when a server sends both
with the same text it counts once. `content` is the answer (final channel). A tool call arrives in
fragments keyed by `index`: the first names the function, the rest carry argument text; each
becomes a commentary Delta addressed to "functions.<name>", as the local engine streams it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.remote.conversation import FUNCTIONS_PREFIX
from engine.types import Delta, FinishReason

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop", "eos": "stop", "end_turn": "stop",
    "length": "length", "max_tokens": "length",
    "tool_calls": "tool_call", "function_call": "tool_call",
}


class ServerReportedError(Exception):
    """The stream (or body) carried an error object instead of a reply: (status, message, code)."""

    def __init__(self, status: int | None, message: str, code: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind


def error_in(payload: Any) -> ServerReportedError | None:
    """The error object of a body or chunk, if it is one: {"error": {...}} or {"object": "error", ...}."""
    if not isinstance(payload, Mapping):
        return None
    err: Any = payload.get("error")
    if err is None and payload.get("object") == "error":
        err = payload
    if err is None:
        return None
    if isinstance(err, str):
        return ServerReportedError(None, err)
    if not isinstance(err, Mapping):
        return ServerReportedError(None, json.dumps(err))
    status = err.get("code") if isinstance(err.get("code"), int) else None
    code = err.get("code") if isinstance(err.get("code"), str) else ""
    return ServerReportedError(status, str(err.get("message") or json.dumps(dict(err))), code,
                               str(err.get("type") or ""))


@dataclass
class ReplyAssembler:
    """Feeds on parsed chunks; remembers what the reply has had so far."""

    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    saw_usage: bool = False
    saw_reasoning: bool = False
    saw_output: bool = False
    _tool_names: dict[int, str] = field(default_factory=dict)

    def feed(self, chunk: Mapping[str, Any]) -> list[Delta]:
        """The events of one streamed chunk. Raises ServerReportedError for an error chunk."""
        error = error_in(chunk)
        if error is not None:
            raise error
        self._usage(chunk.get("usage"))
        events: list[Delta] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue                                    # n > 1 is never asked for
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, Mapping):
                events += self._delta(delta)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = _FINISH_REASONS.get(reason, "stop")
        return events

    def feed_body(self, body: Mapping[str, Any]) -> list[Delta]:
        """The events of a whole (non-streamed) completion, for a server that ignored `stream`."""
        return self.feed(body)

    def _delta(self, delta: Mapping[str, Any]) -> list[Delta]:
        events: list[Delta] = []
        # A server that sends both names (for older clients) sends the same text twice: count it once.
        reasoning = _text(delta.get("reasoning")) or _text(delta.get("reasoning_content"))
        if reasoning:
            self.saw_reasoning = True
            events.append(Delta("analysis", reasoning))
        content = _text(delta.get("content"))
        if content:
            self.saw_output = True
            events.append(Delta("final", content))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, Mapping):
                continue
            index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
            function = call.get("function") or {}
            if not isinstance(function, Mapping):
                continue
            name = function.get("name")
            if isinstance(name, str) and name:
                self._tool_names[index] = name
            arguments = _text(function.get("arguments"))
            recipient = FUNCTIONS_PREFIX + self._tool_names.get(index, "unknown")
            self.saw_output = True
            if arguments:
                events.append(Delta("commentary", arguments, recipient))
        return events

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        self.saw_usage = True
        self.prompt_tokens = _int(usage.get("prompt_tokens"), self.prompt_tokens)
        self.completion_tokens = _int(usage.get("completion_tokens"), self.completion_tokens)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, Mapping):
            self.cached_tokens = _int(details.get("cached_tokens"), self.cached_tokens)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
