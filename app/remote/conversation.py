"""Lantern's conversation -> an OpenAI Chat Completions request (the server renders harmony).

What the server sees is decided where the local prompt is decided: engine.harmony's
`prompt_messages` picks the messages (every system/developer text joined into one instructions
message, so a later one is never dropped by a template that reads only the first; earlier chain
of thought dropped) and this module only changes their shape. Reasoning that is kept (a tool-using
turn in progress) goes as `reasoning` (and the older name `reasoning_content`) on the assistant
message it precedes.

A tool call is an assistant message with a recipient ("functions.get_weather"); its result is a
"tool" message naming the tool (`tool_name`, or `recipient` in older messages). Chat Completions
links the two by a call id, which Lantern does not store: ids are made up here ("call_1", ...) and
each result answers the latest unanswered call to the same tool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.types import GenerationParams, Message

FUNCTIONS_PREFIX = "functions."


def _function_name(recipient: str) -> str:
    return recipient[len(FUNCTIONS_PREFIX):] if recipient.startswith(FUNCTIONS_PREFIX) else recipient


def _tool_of(m: Message) -> str:
    name = getattr(m, "tool_name", None) or (m.recipient if m.recipient not in (None, "assistant") else "")
    return _function_name(name or "")


def openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The `messages` array for Chat Completions (see the module docstring for the rules)."""
    from engine.harmony import prompt_messages   # torch-free; tiktoken only

    instructions, kept = prompt_messages(messages)
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    pending_reasoning: list[str] = []
    open_calls: list[tuple[str, str]] = []      # (function name, call id) not answered yet
    n_calls = 0

    def assistant(entry: dict[str, Any]) -> None:
        if pending_reasoning:
            text = "".join(pending_reasoning)
            entry["reasoning"] = text
            entry["reasoning_content"] = text
            pending_reasoning.clear()
        out.append(entry)

    for m in kept:
        if m.role == "user":
            pending_reasoning.clear()
            out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            channel = m.channel or "final"
            if m.recipient:
                n_calls += 1
                call_id = f"call_{n_calls}"
                name = _function_name(m.recipient)
                open_calls.append((name, call_id))
                call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": m.content}}
                previous = out[-1] if out else None
                if (previous is not None and previous["role"] == "assistant" and "tool_calls" not in previous
                        and not pending_reasoning):
                    previous["tool_calls"] = [call]    # a preamble and its call are one assistant message
                else:
                    assistant({"role": "assistant", "content": None, "tool_calls": [call]})
            elif channel == "analysis":
                pending_reasoning.append(m.content)
            else:                                  # final, or a commentary preamble to the user
                assistant({"role": "assistant", "content": m.content})
        elif m.role == "tool":
            name = _tool_of(m)
            match = next((c for c in reversed(open_calls) if c[0] == name), open_calls[-1] if open_calls else None)
            if match is None:
                continue                           # a result without its call confuses the model: left out
            open_calls.remove(match)
            out.append({"role": "tool", "tool_call_id": match[1], "content": m.content})
    return out


def _tool_dict(tool: Any) -> dict[str, Any]:
    """One function tool in the Chat Completions shape, from engine.types.FunctionTool (name, description,
    parameters) or a mapping in either the flat or the {"type": "function", "function": {...}} shape."""
    if isinstance(tool, Mapping):
        if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
            return {"type": "function", "function": dict(tool["function"])}
        get = tool.get
    else:
        def get(key: str, default: Any = None) -> Any:
            return getattr(tool, key, default)
    function: dict[str, Any] = {"name": _function_name(str(get("name")))}
    if get("description"):
        function["description"] = str(get("description"))
    function["parameters"] = get("parameters") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _tools_part(params: GenerationParams) -> dict[str, Any]:
    """`tools` and `tool_choice` from the parameters' function tools (engine.types.GenerationParams.tools,
    tool_choice, allowed_tools where the engine has them): "none" sends no tools, as harmony renders none."""
    tools = tuple(getattr(params, "tools", None) or ())
    choice = getattr(params, "tool_choice", "auto") or "auto"
    allowed = getattr(params, "allowed_tools", None)
    if not tools or choice == "none":
        return {}
    if allowed:
        tools = tuple(t for t in tools if _tool_dict(t)["function"]["name"] in {_function_name(a) for a in allowed})
    part: dict[str, Any] = {"tools": [_tool_dict(t) for t in tools], "tool_choice": "auto"}
    if choice == "required":
        names = [t["function"]["name"] for t in part["tools"]]
        part["tool_choice"] = ({"type": "function", "function": {"name": names[0]}} if len(names) == 1
                               else "required")
    return part


def _response_format(params: GenerationParams) -> dict[str, Any]:
    fmt = getattr(params, "response_format", None)
    if fmt is None:
        return {}
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema, "strict": bool(getattr(fmt, "strict", True))}
    if getattr(fmt, "description", None):
        schema["description"] = fmt.description
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


def request_body(model: str, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
    """The JSON body of a streaming chat completion.

    `reasoning_effort` is the standard field (vLLM, SGLang, Lantern); llama-server's gpt-oss
    template reads it from `chat_template_kwargs`, so it goes there too. `max_tokens` (rather than
    the newer `max_completion_tokens`) is the name every one of these servers accepts.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": openai_messages(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "reasoning_effort": params.reasoning_effort,
        "chat_template_kwargs": {"reasoning_effort": params.reasoning_effort},
    }
    if params.seed is not None:
        body["seed"] = params.seed
    body.update(_tools_part(params))
    body.update(_response_format(params))
    return body
