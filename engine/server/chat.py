"""POST /v1/chat/completions: request -> harmony conversation; engine events -> completion or chunks.

Reasoning goes out as `reasoning` and, for older clients, `reasoning_content` (the same text); it is
never inside `content`. Either name is accepted on input. System and developer messages become the
developer message's instructions (all of them, in order). An assistant message's `tool_calls` become
harmony calls (`commentary to=functions.NAME <|constrain|>json`), a `tool` message the function's
result, its function found by `tool_call_id` among the earlier calls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.server import common
from engine.server.errors import invalid, unsupported
from engine.server.turn import Piece, TurnAssembler, new_id
from engine.types import Finished, GenerationParams, Message, tool_result


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    params: GenerationParams
    stream: bool
    include_usage: bool
    stops: tuple[str, ...]


def _text(content: Any, param: str) -> str:
    """A message's text: a string, or a list of text parts (joined with line breaks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise invalid("A text part needs a 'text' string.", f"{param}[{j}].text", code="invalid_type")
                texts.append(text)
            elif isinstance(part, dict):
                raise unsupported(f"Content part type {part.get('type')!r}", f"{param}[{j}].type")
            else:
                raise invalid("Content parts must be objects.", f"{param}[{j}]", code="invalid_type")
        return "\n".join(texts)
    raise invalid("Message content must be a string or a list of parts.", param, code="invalid_type")


def _messages(raw: Any, functions: tuple) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty list.", "messages", code="invalid_type")
    out: list[Message] = []
    call_names: dict[str, str] = {}
    for i, m in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid("Each message must be an object.", param, code="invalid_type")
        role = m.get("role")
        if role in ("system", "developer", "user"):
            out.append(Message(role, _text(m.get("content"), f"{param}.content")))
        elif role == "assistant":
            reasoning = m.get("reasoning") or m.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                out.append(Message("assistant", reasoning, channel="analysis"))
            text = _text(m.get("content"), f"{param}.content")
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                raise invalid("'tool_calls' must be a list.", f"{param}.tool_calls", code="invalid_type")
            if text:   # beside tool calls the text is a preamble (commentary), else the answer
                out.append(Message("assistant", text, channel="commentary" if calls else "final"))
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise invalid("A tool call needs a function with a name.", f"{param}.tool_calls[{j}]")
                arguments = fn.get("arguments") or ""
                if not isinstance(arguments, str):
                    raise invalid("A tool call's arguments must be a string.", f"{param}.tool_calls[{j}].function.arguments",
                                  code="invalid_type")
                if isinstance(call.get("id"), str):
                    call_names[call["id"]] = fn["name"]
                out.append(common.call_message(fn["name"], arguments, functions))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            name = call_names.get(call_id) if isinstance(call_id, str) else None
            name = name or (m.get("name") if isinstance(m.get("name"), str) else None)
            if name is None:
                raise invalid(f"No earlier assistant tool call has the id {call_id!r}.", f"{param}.tool_call_id")
            out.append(tool_result(common.result_author(name, functions), _text(m.get("content"), f"{param}.content")))
        else:
            raise invalid(f"Unknown message role {role!r}.", f"{param}.role")
    return out


def parse(body: Mapping[str, Any], model: Any) -> ChatRequest:
    served = common.check_model(body, model)
    n = common.get(body, "n", int, default=1)
    if n != 1:
        raise unsupported("n other than 1", "n")
    if body.get("logprobs"):
        raise unsupported("logprobs", "logprobs")
    functions = common.parse_tools(body.get("tools"), nested=True)
    tool_choice, allowed = common.parse_tool_choice(body.get("tool_choice"), functions, nested=True)
    reasoning = body.get("reasoning")
    effort_value = body.get("reasoning_effort")
    if effort_value is None and isinstance(reasoning, dict):   # OpenRouter's {"reasoning": {"effort": ...}}
        effort_value = reasoning.get("effort")
    stream_options = common.get(body, "stream_options", dict, default={})
    params = GenerationParams(
        **common.sampling(body),
        max_tokens=common.max_tokens(body, ("max_completion_tokens", "max_tokens"), model.info.max_context),
        reasoning_effort=common.effort(effort_value, "reasoning_effort"),
        current_date=common.today(),
        tools=functions, tool_choice=tool_choice, allowed_tools=allowed,
        response_format=common.response_format(body.get("response_format"), "response_format", nested=True),
    )
    return ChatRequest(served, _messages(body.get("messages"), functions), params,
                       bool(common.get(body, "stream", bool, default=False)),
                       bool(stream_options.get("include_usage")), common.stops(body))


def assembler(req: ChatRequest) -> TurnAssembler:
    return TurnAssembler(req.params.tools, req.params.builtin_tools, req.stops)


def finish_reason(finished: Finished, asm: TurnAssembler) -> str:
    if finished.reason == "length":
        return "length"
    if finished.reason == "tool_call" and asm.calls:
        return "tool_calls"
    return "stop"


def usage(finished: Finished, asm: TurnAssembler, tokenizer: Any) -> dict[str, Any]:
    u = finished.usage
    reasoning_tokens = len(tokenizer.encode(asm.reasoning)) if asm.reasoning else 0
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.reused_tokens},
            "completion_tokens_details": {"reasoning_tokens": min(reasoning_tokens, u.completion_tokens)}}


def completion(req: ChatRequest, cid: str, created: int, asm: TurnAssembler, finished: Finished,
               tokenizer: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": asm.content or (None if asm.calls else ""),
                               "refusal": None}
    if asm.reasoning:
        message["reasoning"] = message["reasoning_content"] = asm.reasoning
    if asm.calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in asm.calls]
    return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(finished, asm)}],
            "usage": usage(finished, asm, tokenizer)}


class ChunkWriter:
    """The chunks of one streamed completion (same id and created in every chunk)."""

    def __init__(self, req: ChatRequest) -> None:
        self.req = req
        self.id = new_id("chatcmpl-")
        self.created = int(time.time())
        self._call_index: dict[str, int] = {}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.req.model,
               "system_fingerprint": None,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.req.include_usage:
            out["usage"] = None
        return out

    def first(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""})

    def piece(self, p: Piece) -> dict[str, Any] | None:
        if p.kind == "reasoning":
            return self.chunk({"reasoning": p.text, "reasoning_content": p.text})
        if p.kind == "content":
            return self.chunk({"content": p.text})
        assert p.call is not None
        if p.kind == "call":
            index = self._call_index.setdefault(p.call.id, len(self._call_index))
            return self.chunk({"tool_calls": [{"index": index, "id": p.call.id, "type": "function",
                                               "function": {"name": p.call.name, "arguments": ""}}]})
        if not p.text:
            return None
        return self.chunk({"tool_calls": [{"index": self._call_index[p.call.id], "function": {"arguments": p.text}}]})

    def last(self, finished: Finished, asm: TurnAssembler) -> dict[str, Any]:
        return self.chunk({}, finish_reason(finished, asm))

    def usage_chunk(self, finished: Finished, asm: TurnAssembler, tokenizer: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.req.model,
                "system_fingerprint": None, "choices": [], "usage": usage(finished, asm, tokenizer)}


def with_budget(req: ChatRequest, prompt_tokens: int, max_context: int) -> ChatRequest:
    """Bound the reply by what the context has left (the engine would stop there anyway)."""
    room = max(1, max_context - prompt_tokens)
    return replace(req, params=replace(req.params, max_tokens=min(req.params.max_tokens, room)))
