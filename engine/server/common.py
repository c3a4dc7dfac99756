"""Request fields both APIs share: model, sampling, reasoning effort, tools, tool choice, response format.

Each parser checks one field and raises a 400 in OpenAI's shape naming it (`param`). Unknown fields
are ignored, as OpenAI's own server ignores fields an older model does not use.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.harmony_tools import function_names, sanitize_function_name
from engine.server.errors import context_length_exceeded, invalid, model_not_found, unsupported
from engine.types import FunctionTool, Message, ReasoningEffort, ResponseFormat, ToolChoice

# A prompt must leave room for this many reply tokens (engine.api.MIN_REPLY_TOKENS, restated here so
# that importing the server does not import torch).
MIN_REPLY_TOKENS = 64
MAX_STOP_SEQUENCES = 4
EFFORTS: dict[str, ReasoningEffort] = {"low": "low", "medium": "medium", "high": "high",
                                       "minimal": "low", "none": "low"}   # OpenAI's extra levels: the nearest one
MISSING = object()


def model_id(model: Any) -> str:
    return model.info.name


def model_aliases(model: Any) -> set[str]:
    """Names a request may use for the served model: its id, the id's last part, and gpt-oss-20b /
    gpt-oss-120b when the checkpoint has that shape (clients often hard-code those)."""
    served = model_id(model)
    names = {served, served.rsplit("/", 1)[-1]}
    size = {32: "gpt-oss-20b", 128: "gpt-oss-120b"}.get(getattr(model.info, "num_experts", 0))
    if size:
        names |= {size, f"openai/{size}"}
    return names


def check_model(body: Mapping[str, Any], model: Any) -> str:
    name = body.get("model", MISSING)
    if name is MISSING or name is None:
        raise invalid("You must provide a model parameter.", "model", code="missing_required_parameter")
    if not isinstance(name, str):
        raise invalid("model must be a string.", "model")
    if name not in model_aliases(model):
        raise model_not_found(name)
    return model_id(model)


def get(body: Mapping[str, Any], key: str, types: type | tuple[type, ...], param: str | None = None,
        default: Any = None) -> Any:
    """body[key] if present and not null, checked against `types` (bool is never a number here)."""
    value = body.get(key, None)
    if value is None:
        return default
    wants_number = int in (types if isinstance(types, tuple) else (types,))
    if (isinstance(value, bool) and wants_number) or not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise invalid(f"Invalid type for '{param or key}': expected {names}.", param or key, code="invalid_type")
    return value


def number(body: Mapping[str, Any], key: str, lo: float, hi: float, default: float, *, lo_open: bool = False) -> float:
    value = float(get(body, key, (int, float), default=default))
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value <= lo):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise invalid(f"'{key}' must be {bound} and <= {hi} (got {value}).", key)
    return value


def sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    seed = get(body, "seed", int)
    return {"temperature": number(body, "temperature", 0.0, 2.0, 1.0),
            "top_p": number(body, "top_p", 0.0, 1.0, 1.0, lo_open=True),
            "seed": seed}


def max_tokens(body: Mapping[str, Any], keys: Sequence[str], max_context: int) -> int:
    """The reply budget: the first of `keys` given, bounded by the context (default: all of it)."""
    for key in keys:
        value = get(body, key, int)
        if value is None:
            continue
        if value < 1:
            raise invalid(f"'{key}' must be at least 1 (got {value}).", key)
        if value > max_context:
            raise invalid(f"'{key}' is too large: {value}. This model supports at most {max_context} tokens "
                          "(prompt and reply together).", key)
        return value
    return max_context


def effort(value: Any, param: str) -> ReasoningEffort:
    if value is None:
        return "medium"
    if not isinstance(value, str) or value.lower() not in EFFORTS:
        raise invalid(f"'{param}' must be one of low, medium, high (got {value!r}).", param)
    return EFFORTS[value.lower()]


def today() -> str:
    return datetime.date.today().isoformat()


def stops(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise invalid("'stop' must be a string or a list of strings.", "stop", code="invalid_type")
    if len(value) > MAX_STOP_SEQUENCES:
        raise invalid(f"'stop' holds at most {MAX_STOP_SEQUENCES} sequences.", "stop")
    return tuple(s for s in value if s)


# --- tools ------------------------------------------------------------------------------------------


def _parameters(schema: Any, param: str) -> Any:
    """A function's parameter schema as the prompt gets it: an object with no properties takes none."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise invalid("A function's parameters must be a JSON Schema object.", param, code="invalid_type")
    if not schema or (schema.get("type") == "object" and not schema.get("properties") and len(
            set(schema) - {"type", "properties", "required", "additionalProperties", "$schema"}) == 0):
        return None
    return schema


def parse_tools(raw: Any, *, nested: bool) -> tuple[FunctionTool, ...]:
    """Function tools. Chat Completions nests the function (`{"type":"function","function":{...}}`), Responses not."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("'tools' must be a list.", "tools", code="invalid_type")
    out: list[FunctionTool] = []
    for i, tool in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid("Each tool must be an object.", param, code="invalid_type")
        if tool.get("type") != "function":
            raise unsupported(f"Tool type {tool.get('type')!r}", f"{param}.type")
        fn = tool.get("function") if nested else tool
        if not isinstance(fn, dict):
            raise invalid("A function tool needs a 'function' object.", f"{param}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise invalid("A function needs a name (a string of at most 128 characters).", f"{param}.name")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise invalid("A function's description must be a string.", f"{param}.description", code="invalid_type")
        out.append(FunctionTool(name, description, _parameters(fn.get("parameters"), f"{param}.parameters")))
    if len({t.name for t in out}) != len(out):
        raise invalid("Function names must be unique.", "tools")
    return tuple(out)


def parse_tool_choice(raw: Any, functions: Sequence[FunctionTool], *, nested: bool
                      ) -> tuple[ToolChoice, tuple[str, ...] | None]:
    """(tool_choice, allowed function names) from "auto" | "none" | "required" | {"type":"function", ...}."""
    if raw is None:
        return "auto", None
    if raw in ("auto", "none", "required"):
        if raw == "required" and not functions:
            raise invalid("tool_choice 'required' needs at least one tool.", "tool_choice")
        return raw, None
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = raw.get("function") if nested else raw
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in {t.name for t in functions}:
            raise invalid(f"tool_choice names a function that is not in 'tools': {name!r}.", "tool_choice")
        return "required", (name,)
    raise invalid("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', ...}.", "tool_choice")


def call_message(name: str, arguments: str, functions: Sequence[FunctionTool]) -> Message:
    """A function call in the history, written as harmony renders the model's own calls."""
    prompt_name = function_names(functions).get(name, sanitize_function_name(name))
    return Message("assistant", arguments, channel="commentary", recipient=f"functions.{prompt_name}",
                   content_type="<|constrain|>json")


def result_author(name: str, functions: Sequence[FunctionTool]) -> str:
    return "functions." + function_names(functions).get(name, sanitize_function_name(name))


# --- response format --------------------------------------------------------------------------------


def response_format(raw: Any, param: str, *, nested: bool) -> ResponseFormat | None:
    """text | json_object | json_schema. Chat nests the schema (`json_schema: {name, schema}`), Responses not."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid(f"'{param}' must be an object.", param, code="invalid_type")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object", {"type": "object"})
    if kind != "json_schema":
        raise invalid(f"'{param}.type' must be text, json_object or json_schema.", f"{param}.type")
    spec = raw.get("json_schema") if nested else raw
    if not isinstance(spec, dict):
        raise invalid(f"'{param}' needs a json_schema object.", param)
    name = spec.get("name") or "response"
    schema = spec.get("schema")
    if not isinstance(name, str) or not isinstance(schema, dict):
        raise invalid("A JSON-schema response format needs a name and a schema object.", param)
    fmt = ResponseFormat(name, schema, spec.get("description") if isinstance(spec.get("description"), str) else None,
                         bool(spec.get("strict", True)))
    from engine.structured import SchemaError, grammar_for

    try:
        grammar_for(fmt)
    except SchemaError as exc:
        raise invalid(str(exc), param) from exc
    return fmt


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request turned into the engine's terms, checked against the context."""

    messages: list[Message]
    prompt_tokens: int


def check_context(model: Any, messages: list[Message], params: Any, param: str) -> Prepared:
    """Render once to check the size now, so an overflow is a 400 before any stream starts."""
    prompt = model.render(messages, params)
    limit = model.info.max_context
    if len(prompt) + min(params.max_tokens, MIN_REPLY_TOKENS) > limit:
        raise context_length_exceeded(limit, len(prompt) + min(params.max_tokens, MIN_REPLY_TOKENS), param)
    return Prepared(messages, len(prompt))
