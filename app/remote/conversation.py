"""Lantern's conversation -> an OpenAI Chat Completions request (the server renders harmony).

The same choices as engine/harmony.py's `prompt_messages`, so a remote model sees what a local one
would: every system/developer text joined into one instructions message at the start (a later
system message is never dropped: some chat templates read only the first), and earlier chain of
thought dropped. Assistant messages before the last user message keep only their answer; after
it (a tool-using turn in progress) reasoning is kept and sent as `reasoning` (and the older name
`reasoning_content`) on the assistant message it belongs to, with its tool calls.

A tool call is an assistant message with a recipient ("functions.get_weather"); its result is a
"tool" message whose recipient names the tool. Chat Completions links the two by a call id, which
Lantern does not store: ids are made up here ("call_1", ...) and each result answers the latest
unanswered call to the same tool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.types import GenerationParams, Message

FUNCTIONS_PREFIX = "functions."


def _function_name(recipient: str) -> str:
    return recipient[len(FUNCTIONS_PREFIX):] if recipient.startswith(FUNCTIONS_PREFIX) else recipient


def openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The `messages` array for Chat Completions (see the module docstring for the rules)."""
    instructions = [m.content for m in messages if m.role in ("system", "developer") and m.content.strip()]
    convo = [m for m in messages if m.role not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(convo) if m.role == "user"), default=-1)
    out: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(instructions)}] if instructions else []
    pending_reasoning: list[str] = []
    open_calls: list[tuple[str, str]] = []      # (function name, call id) not answered yet
    n_calls = 0

    def assistant(entry: dict[str, Any]) -> dict[str, Any]:
        if pending_reasoning:
            text = "".join(pending_reasoning)
            entry["reasoning"] = text
            entry["reasoning_content"] = text
            pending_reasoning.clear()
        out.append(entry)
        return entry

    for i, m in enumerate(convo):
        in_progress = i > last_user
        if m.role == "user":
            out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            channel = m.channel or "final"
            if not in_progress and (channel != "final" or m.recipient):
                continue                           # earlier chain of thought and tool traffic: dropped
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
            if not in_progress:
                continue
            name = _function_name(m.recipient or "")
            match = next((c for c in reversed(open_calls) if c[0] == name), open_calls[-1] if open_calls else None)
            if match is None:
                continue                           # a result without its call confuses the model: left out
            open_calls.remove(match)
            out.append({"role": "tool", "tool_call_id": match[1], "content": m.content})
    if pending_reasoning:                          # reasoning with nothing after it (a stopped turn)
        pending_reasoning.clear()
    return out


def _tool_dict(tool: Any) -> dict[str, Any]:
    """One function tool in the Chat Completions shape, from a mapping or an object with name/description/parameters."""
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


def request_body(model: str, messages: Sequence[Message], params: GenerationParams,
                 tools: Sequence[Any] = ()) -> dict[str, Any]:
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
    if tools:
        body["tools"] = [_tool_dict(t) for t in tools]
        body["tool_choice"] = "auto"
    return body


def tools_of(params: GenerationParams) -> tuple[Any, ...]:
    """Function tools the reply may call, if the parameters carry any (`params.tools`).

    GenerationParams has no tools field yet (the local engine's tool support is being built); a
    params object that has one (a subclass, or the field once it lands) is honoured here.
    """
    return tuple(getattr(params, "tools", None) or ())
