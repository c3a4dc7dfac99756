"""A reply with tools: when the model stops on a tool call, run the tool, append its result, continue.

    loop = ToolLoop(engine, session, toolbox)
    for event in loop.run(messages, params, should_stop):
        ...   # Delta (and each round's PrefillProgress/DecodeProgress), ToolCallStarted,
              # ToolCallFinished, then exactly one Finished

Qt-free and engine-agnostic: it needs only the `ChatEngine` protocol. Each round is one
`engine.chat` call on the same session, with the conversation grown by the messages the model
wrote this round (rebuilt from its deltas: channel, recipient and content type as parsed) and the
tool's result (`tool_result`, on the channel of the call). The engine keeps the longest common
prefix of its KV cache, so a round re-reads only what changed since the call: `rounds` holds every
round's Usage (its `reused_tokens` shows it).

Routing is `engine.harmony_tools.route_recipient`: `browser.search|open|find` go to the chat's
browser, `python` to its kernel once `toolbox.approve(call)` says yes, declared functions to
`toolbox.functions`; anything else gets a short error as the tool's reply, so the model can recover.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine.harmony_tools import ToolCallTarget, route_recipient
from engine.types import ChatEngine, ChatEvent, Delta, Finished, GenerationParams, Message, Usage, tool_result

log = logging.getLogger(__name__)

MAX_ROUNDS = 12
_AUTHOR_RE = re.compile(r"^[A-Za-z_][\w.\-]*$")


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: the message as parsed and where it is routed."""

    call_id: int
    recipient: str
    arguments: str
    channel: str
    content_type: str | None
    target: ToolCallTarget

    @property
    def message(self) -> Message:
        return Message("assistant", self.arguments, channel=self.channel,  # type: ignore[arg-type]
                       recipient=self.recipient, content_type=self.content_type)


@dataclass(frozen=True)
class ToolCallStarted:
    call: ToolCall


@dataclass(frozen=True)
class ToolCallFinished:
    call: ToolCall
    author: str          # the tool message's author, e.g. "browser.search", "python"
    output: str          # what the model is given
    status: str          # "ok" | "denied" | "error"


LoopEvent = ChatEvent | ToolCallStarted | ToolCallFinished


@dataclass
class ToolBox:
    """What a reply may use. `browser`: has `call(function, arguments) -> str` (engine.tools.browser);
    `python`: has `run(code) -> str` (a PythonSession); `approve(call)`: may the code run (blocks
    until the user answers; False also when stopped)."""

    browser: Any = None
    python: Any = None
    approve: Callable[[ToolCall], bool] = lambda call: False
    functions: dict[str, Callable[[str], str]] = field(default_factory=dict)


def messages_from_deltas(deltas: Sequence[Delta]) -> list[Message]:
    """The assistant messages of a round: consecutive deltas with the same header make one message."""
    out: list[Message] = []
    key = None
    parts: list[str] = []
    for d in deltas:
        k = (d.channel, d.recipient, d.content_type)
        if k != key and parts:
            out.append(Message("assistant", "".join(parts), channel=key[0], recipient=key[1], content_type=key[2]))
            parts = []
        key = k
        parts.append(d.text)
    if parts and key is not None:
        out.append(Message("assistant", "".join(parts), channel=key[0], recipient=key[1], content_type=key[2]))
    return out


def _sum_usage(rounds: Sequence[Usage]) -> Usage:
    last = rounds[-1]
    return replace(last, completion_tokens=sum(u.completion_tokens for u in rounds),
                   peak_memory_bytes=max(u.peak_memory_bytes for u in rounds))


class ToolLoop:
    def __init__(self, engine: ChatEngine, session: Any, toolbox: ToolBox, *, max_rounds: int = MAX_ROUNDS) -> None:
        self.engine = engine
        self.session = session
        self.toolbox = toolbox
        self.max_rounds = max_rounds
        self.rounds: list[Usage] = []
        self.conversation: list[Message] = []
        self._ids = itertools.count(1)

    def run(self, messages: Sequence[Message], params: GenerationParams,
            should_stop: Callable[[], bool] = lambda: False) -> Iterator[LoopEvent]:
        """Stream the reply across its tool calls; ends with exactly one Finished.

        Raises what `engine.chat` raises when called (ContextFull) only for the first round; a later
        round that no longer fits ends the reply with Finished("length").
        """
        self.conversation = list(messages)
        self.rounds = []
        for round_no in range(self.max_rounds + 1):
            try:
                events = self.engine.chat(self.session, self.conversation, params, should_stop=should_stop)
            except Exception as exc:  # noqa: BLE001
                if round_no == 0:
                    raise
                log.info("tool round %d could not start: %s", round_no, exc)
                yield Finished("length", _sum_usage(self.rounds), str(exc))
                return
            deltas: list[Delta] = []
            finished: Finished | None = None
            for event in events:
                if isinstance(event, Delta):
                    deltas.append(event)
                    yield event
                elif isinstance(event, Finished):
                    finished = event
                else:              # PrefillProgress, DecodeProgress: each round's own
                    yield event
            if finished is None:
                finished = Finished("error", error="The reply ended unexpectedly.", error_kind="bug")
            self.rounds.append(finished.usage)
            written = messages_from_deltas(deltas)
            call_msg = written[-1] if written and written[-1].recipient else None
            if finished.reason != "tool_call" or call_msg is None or round_no == self.max_rounds or should_stop():
                if finished.reason == "tool_call" and call_msg is not None and round_no == self.max_rounds:
                    log.info("reply stopped after %d tool calls", self.max_rounds)
                reason = "cancelled" if should_stop() and finished.reason == "tool_call" else finished.reason
                yield Finished(reason, _sum_usage(self.rounds), finished.error,
                               finished.error_kind if reason == "error" else None)
                return
            call = ToolCall(next(self._ids), call_msg.recipient or "", call_msg.content, call_msg.channel or "analysis",
                            call_msg.content_type, route_recipient(call_msg.recipient or "", params.tools,
                                                                   params.builtin_tools))
            yield ToolCallStarted(call)
            author, output, status = self._execute(call, should_stop)
            yield ToolCallFinished(call, author, output, status)
            self.conversation += written
            self.conversation.append(tool_result(author, output, channel=call.channel))  # type: ignore[arg-type]
            if should_stop():          # stopped while the tool ran: no new round
                yield Finished("cancelled", _sum_usage(self.rounds))
                return
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute(self, call: ToolCall, should_stop: Callable[[], bool]) -> tuple[str, str, str]:
        """(author, output, status) of running `call`."""
        target = call.target
        box = self.toolbox
        try:
            if target.kind == "browser" and box.browser is not None:
                return f"browser.{target.name}", box.browser.call(target.name, call.arguments), "ok"
            if target.kind == "python" and box.python is not None:
                from engine.tools.python_sandbox.session import code_from_call

                if should_stop() or not box.approve(call):
                    return "python", "[ERROR] The user did not allow this code to run.", "denied"
                return "python", box.python.run(code_from_call(call.arguments)), "ok"
            if target.kind == "function" and target.name in box.functions:
                return call.recipient, box.functions[target.name](call.arguments), "ok"
        except Exception as exc:  # noqa: BLE001 - a failing tool answers the model; the reply goes on
            log.exception("tool %s failed", call.recipient)
            author = "python" if target.kind == "python" else (
                f"browser.{target.name}" if target.kind == "browser" else call.recipient)
            return author, f"[ERROR] The tool failed: {type(exc).__name__}: {exc}", "error"
        available = [*(f"browser.{n}" for n in ("search", "open", "find") if box.browser is not None),
                     *(["python"] if box.python is not None else []), *(f"functions.{n}" for n in box.functions)]
        author = call.recipient if _AUTHOR_RE.match(call.recipient) else "functions.unknown"
        offered = ", ".join(available) if available else "none"
        return author, f"Error: there is no tool `{call.recipient}` here (available: {offered}).", "error"


__all__ = ["LoopEvent", "ToolBox", "ToolCall", "ToolCallFinished", "ToolCallStarted", "ToolLoop",
           "messages_from_deltas"]
