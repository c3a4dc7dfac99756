"""POST /v1/responses: the Responses API as gpt-oss was trained for it.

Harmony messages map one to one onto output items: analysis -> a `reasoning` item (its text in
`content[0].reasoning_text`), final/preamble -> a `message` item (`output_text`), a function call ->
a `function_call` item. Input items map back the same way. `instructions` become the developer
message's instructions and are not carried over by `previous_response_id` (as OpenAI documents);
the stored chain (input and output items) is. `store` defaults to true.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.server import common
from engine.server.chat import _text
from engine.server.errors import APIError, invalid, unsupported
from engine.server.store import ResponseStore
from engine.server.turn import Piece, ToolCall, TurnAssembler, new_id
from engine.types import Finished, GenerationParams, Message, tool_result


@dataclass(slots=True)
class ResponsesRequest:
    model: str
    messages: list[Message]
    params: GenerationParams
    stream: bool
    store: bool
    items: list[dict[str, Any]]            # previous chain + this input (stored with the output)
    echo: dict[str, Any] = field(default_factory=dict)   # request fields the Response object repeats


def _input_items(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise invalid("'input' must be a string or a list of items.", "input", code="invalid_type")
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise invalid("Each input item must be an object.", f"input[{i}]", code="invalid_type")
    return list(raw)


def items_to_messages(items: list[dict[str, Any]], functions: tuple, first_new: int) -> list[Message]:
    """Conversation items -> harmony messages. `first_new` is where this request's input starts (for `param`)."""
    out: list[Message] = []
    call_names: dict[str, str] = {}
    for i, item in enumerate(items):
        param = f"input[{i - first_new}]" if i >= first_new else "previous_response_id"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(f"Unknown message role {role!r}.", f"{param}.role")
            text = _text(item.get("content"), f"{param}.content")
            out.append(Message(role, text, channel="final") if role == "assistant" else Message(role, text))
        elif kind == "reasoning":
            parts = item.get("content") or []
            text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) if isinstance(parts, list) else ""
            if text:
                out.append(Message("assistant", text, channel="analysis"))
        elif kind == "function_call":
            name, arguments = item.get("name"), item.get("arguments") or ""
            if not isinstance(name, str) or not isinstance(arguments, str):
                raise invalid("A function_call item needs a name and string arguments.", param)
            if isinstance(item.get("call_id"), str):
                call_names[item["call_id"]] = name
            out.append(common.call_message(name, arguments, functions))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in call_names:
                raise invalid(f"No function_call with call_id {call_id!r} comes before this output.", f"{param}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _text(output, f"{param}.output")
            out.append(tool_result(common.result_author(call_names[call_id], functions), text))
        else:
            raise unsupported(f"Input item type {kind!r}", f"{param}.type")
    return out


def parse(body: Mapping[str, Any], model: Any, store: ResponseStore) -> ResponsesRequest:
    served = common.check_model(body, model)
    functions = common.parse_tools(body.get("tools"), nested=False)
    tool_choice, allowed = common.parse_tool_choice(body.get("tool_choice"), functions, nested=False)
    reasoning = common.get(body, "reasoning", dict, default={})
    text = common.get(body, "text", dict, default={})
    instructions = common.get(body, "instructions", str)
    previous_id = common.get(body, "previous_response_id", str)
    items: list[dict[str, Any]] = []
    if previous_id is not None:
        stored = store.get(previous_id)
        if stored is None:
            raise APIError(404, f"Previous response with id '{previous_id}' not found.", param="previous_response_id",
                           code="previous_response_not_found")
        items = stored[1]
    first_new = len(items)
    items += _input_items(body.get("input"))
    messages = ([Message("developer", instructions)] if instructions else []) + items_to_messages(
        items, functions, first_new)
    params = GenerationParams(
        **common.sampling(body),
        max_tokens=common.max_tokens(body, ("max_output_tokens",), model.info.max_context),
        reasoning_effort=common.effort(reasoning.get("effort"), "reasoning.effort"),
        current_date=common.today(),
        tools=functions, tool_choice=tool_choice, allowed_tools=allowed,
        response_format=common.response_format(text.get("format"), "text.format", nested=False),
    )
    metadata = common.get(body, "metadata", dict, default={})
    echo = {
        "instructions": instructions, "tools": body.get("tools") or [], "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)), "temperature": params.temperature,
        "top_p": params.top_p, "max_output_tokens": common.get(body, "max_output_tokens", int),
        "previous_response_id": previous_id, "reasoning": {"effort": params.reasoning_effort, "summary": None},
        "text": {"format": text.get("format") or {"type": "text"}}, "metadata": metadata, "truncation": "disabled",
        "user": None,
    }
    return ResponsesRequest(served, messages, params, bool(common.get(body, "stream", bool, default=False)),
                            bool(common.get(body, "store", bool, default=True)), items, echo)


class ResponseBuilder:
    """Turns pieces into output items and (for streaming) the events announcing them."""

    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req
        self.id = new_id("resp_")
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self._seq = 0
        self._open: dict[str, Any] | None = None      # the item being written
        self._open_kind: str | None = None
        self._call: ToolCall | None = None

    # -- the Response object ------------------------------------------------------------------------
    def response(self, status: str, usage: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                 incomplete: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "model": self.req.model, "output": list(self.output), "usage": usage, "error": error,
                "incomplete_details": {"reason": incomplete} if incomplete else None,
                "store": self.req.store, **self.req.echo}

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        snapshot = self.response("in_progress")
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    # -- items --------------------------------------------------------------------------------------
    @property
    def _index(self) -> int:
        return len(self.output) - 1

    def _open_item(self, kind: str, call: ToolCall | None = None) -> list[dict[str, Any]]:
        events = self._close_item()
        if kind == "reasoning":
            item = {"id": new_id("rs_"), "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        elif kind == "message":
            item = {"id": new_id("msg_"), "type": "message", "role": "assistant", "status": "in_progress", "content": []}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            assert call is not None
            item = {"id": new_id("fc_"), "type": "function_call", "call_id": call.id, "name": call.name,
                    "arguments": "", "status": "in_progress"}
            part = None
        self.output.append(item)
        self._open, self._open_kind, self._call = item, kind, call
        events.append(self._event("response.output_item.added", output_index=self._index, item=dict(item)))
        if part is not None:
            item["content"] = [part]
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=self._index,
                                      content_index=0, part=dict(part)))
        return events

    def _close_item(self) -> list[dict[str, Any]]:
        item, kind = self._open, self._open_kind
        if item is None:
            return []
        self._open = self._open_kind = self._call = None
        item["status"] = "completed"
        common_fields = {"item_id": item["id"], "output_index": self.output.index(item)}
        events = []
        if kind == "reasoning":
            part = item["content"][0]
            events += [self._event("response.reasoning_text.done", **common_fields, content_index=0, text=part["text"]),
                       self._event("response.content_part.done", **common_fields, content_index=0, part=dict(part))]
        elif kind == "message":
            part = item["content"][0]
            events += [self._event("response.output_text.done", **common_fields, content_index=0, text=part["text"],
                                   logprobs=[]),
                       self._event("response.content_part.done", **common_fields, content_index=0, part=dict(part))]
        else:
            events.append(self._event("response.function_call_arguments.done", **common_fields,
                                      arguments=item["arguments"], name=item["name"]))
        events.append(self._event("response.output_item.done", output_index=common_fields["output_index"],
                                  item=dict(item)))
        return events

    def piece(self, p: Piece) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if p.kind == "call":
            return self._open_item("function_call", p.call)
        kind = {"reasoning": "reasoning", "content": "message", "arguments": "function_call"}[p.kind]
        if self._open_kind != kind or (kind == "function_call" and self._call is not p.call):
            if kind == "function_call":
                events += self._open_item(kind, p.call)
            else:
                events += self._open_item(kind)
        item = self._open
        assert item is not None
        where = {"item_id": item["id"], "output_index": self._index}
        if kind == "reasoning":
            item["content"][0]["text"] += p.text
            events.append(self._event("response.reasoning_text.delta", **where, content_index=0, delta=p.text))
        elif kind == "message":
            item["content"][0]["text"] += p.text
            events.append(self._event("response.output_text.delta", **where, content_index=0, delta=p.text,
                                      logprobs=[]))
        elif p.text:
            item["arguments"] += p.text
            events.append(self._event("response.function_call_arguments.delta", **where, delta=p.text))
        return events

    def finish(self, finished: Finished, asm: TurnAssembler, tokenizer: Any) -> tuple[dict[str, Any], list[dict]]:
        """(the final Response, the closing events)."""
        events = self._close_item()
        u = finished.usage
        reasoning_tokens = min(len(tokenizer.encode(asm.reasoning)) if asm.reasoning else 0, u.completion_tokens)
        usage = {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.reused_tokens},
                 "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                 "total_tokens": u.prompt_tokens + u.completion_tokens}
        if finished.reason == "length":
            response = self.response("incomplete", usage, incomplete="max_output_tokens")
            events.append(self._event("response.incomplete", response=response))
        else:
            response = self.response("completed", usage)
            events.append(self._event("response.completed", response=response))
        return response, events

    def failed(self, error: APIError) -> tuple[dict[str, Any], list[dict]]:
        events = self._close_item()
        response = self.response("failed", error={"code": error.code or "server_error", "message": error.message})
        events.append(self._event("response.failed", response=response))
        return response, events

    def stored_items(self) -> list[dict[str, Any]]:
        return self.req.items + [dict(item) for item in self.output]


def assembler(req: ResponsesRequest) -> TurnAssembler:
    return TurnAssembler(req.params.tools, req.params.builtin_tools, ())
