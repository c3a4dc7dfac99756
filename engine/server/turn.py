"""Engine deltas -> what an OpenAI client sees: reasoning, answer text, tool calls.

Routing is by channel and recipient, never by position (docs/harmony-tools.md): `analysis` is
reasoning, `final` and commentary without a recipient (a preamble) are the answer's text, a
recipient that names a declared function is a tool call (the sanitised name mapped back to the
caller's). A recipient that names nothing declared is malformed output: its text is kept as text
(reasoning if it was on analysis), never a tool call the client cannot run and never an error.
Stop sequences apply to the answer's text; the text is held back while it could still become one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.harmony_tools import route_recipient
from engine.types import BuiltinTool, Delta, FunctionTool

PieceKind = Literal["reasoning", "content", "call", "arguments"]


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass(slots=True)
class ToolCall:
    id: str                 # call_... (what the client sends back with the result)
    name: str               # the caller's function name
    recipient: str          # as the model wrote it (functions.<prompt name>)
    content_type: str | None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Piece:
    kind: PieceKind
    text: str = ""
    call: ToolCall | None = None


class StopScanner:
    """Finds the first of `stops` in streamed text; holds back a tail that could start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stops or self.hit:
            return "" if self.hit else text
        buf = self._pending + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit, self._pending = True, ""
            return buf[:cut]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        self._pending = buf[len(buf) - hold:] if hold else ""
        return buf[:len(buf) - hold]

    def flush(self) -> str:
        out, self._pending = ("" if self.hit else self._pending), ""
        return out


@dataclass
class TurnAssembler:
    functions: Sequence[FunctionTool] = ()
    builtin_tools: Sequence[BuiltinTool] = ()
    stops: Sequence[str] = ()
    reasoning: str = ""
    content: str = ""
    calls: list[ToolCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._scanner = StopScanner(self.stops)
        self._key: tuple[str | None, str | None, str] | None = None
        self._call: ToolCall | None = None
        self._unknown_channel: str | None = None

    @property
    def stopped_by_sequence(self) -> bool:
        return self._scanner.hit

    def feed(self, delta: Delta) -> list[Piece]:
        key = (delta.recipient, delta.content_type, delta.channel)
        if delta.recipient is None:
            self._key, self._call = key, None
            if delta.channel == "analysis":
                return self._reasoning(delta.text)
            return self._content(delta.text)
        out: list[Piece] = []
        if key != self._key:
            self._key = key
            target = route_recipient(delta.recipient, self.functions, self.builtin_tools)
            if target.kind == "function":
                self._call = ToolCall(new_id("call_"), target.name, delta.recipient, delta.content_type)
                self.calls.append(self._call)
                out.append(Piece("call", call=self._call))
            else:
                self._call = None
                self._unknown_channel = delta.channel
        if self._call is not None:
            self._call.arguments += delta.text
            out.append(Piece("arguments", delta.text, self._call))
            return out
        return out + (self._reasoning(delta.text) if delta.channel == "analysis" else self._content(delta.text))

    def _reasoning(self, text: str) -> list[Piece]:
        self.reasoning += text
        return [Piece("reasoning", text)] if text else []

    def _content(self, text: str) -> list[Piece]:
        text = self._scanner.feed(text)
        self.content += text
        return [Piece("content", text)] if text else []

    def finish(self) -> list[Piece]:
        return self._content_tail()

    def _content_tail(self) -> list[Piece]:
        text = self._scanner.flush()
        self.content += text
        return [Piece("content", text)] if text else []
