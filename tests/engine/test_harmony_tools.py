"""Tool declarations and tool messages rendered byte-identical to openai-harmony (run offline)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(ROOT / "resources" / "tokenizer")

import openai_harmony as oh  # noqa: E402

from engine.harmony import render_conversation, system_message_text  # noqa: E402
from engine.harmony_tools import (  # noqa: E402
    PYTHON_DESCRIPTION,
    function_names,
    prompt_json,
    sanitize_function_name,
    schema_to_typescript,
)
from engine.tokenizer import Tokenizer  # noqa: E402
from engine.types import FunctionTool, GenerationParams, Message, ResponseFormat, tool_result  # noqa: E402


@pytest.fixture(scope="module")
def enc() -> oh.HarmonyEncoding:
    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


EFFORTS = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}


def _oracle_message(m: Message) -> oh.Message:
    if m.role == "user":
        return oh.Message.from_role_and_content(oh.Role.USER, m.content)
    if m.role == "assistant":
        msg = oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content).with_channel(m.channel or "final")
        if m.recipient:
            msg = msg.with_recipient(m.recipient)
        return msg.with_content_type(m.content_type) if m.content_type else msg
    assert m.role == "tool"
    msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, m.tool_name), m.content)
    msg = msg.with_recipient(m.recipient or "assistant")
    return msg.with_channel(m.channel) if m.channel else msg


def _oracle(enc: oh.HarmonyEncoding, messages: list[Message], params: GenerationParams,
            instructions: str | None = None) -> list[int]:
    system = oh.SystemContent.new().with_reasoning_effort(EFFORTS[params.reasoning_effort])
    if params.current_date:
        system = system.with_conversation_start_date(params.current_date)
    for name in params.builtin_tools:
        system = system.with_browser_tool() if name == "browser" else system.with_python_tool()
    hm = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]
    functions = params.tools if params.tool_choice != "none" else ()
    if instructions is not None or functions:
        dev = oh.DeveloperContent.new()
        if instructions is not None:
            dev = dev.with_instructions(instructions)
        if functions:
            names = function_names(functions)
            dev = dev.with_function_tools([oh.ToolDescription.new(names[t.name], t.description, t.parameters)
                                           for t in functions])
        hm.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev))
    hm += [_oracle_message(m) for m in messages]
    return enc.render_conversation_for_completion(oh.Conversation.from_messages(hm), oh.Role.ASSISTANT)


WEATHER = FunctionTool("get_current_weather", "Gets the current weather in the provided location.", {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
    },
    "required": ["location"],
})
LOCATION = FunctionTool("get_location", "Gets the location of the user.")

# JSON Schemas covering what harmony's converter understands, and what it renders as `any`.
SCHEMAS: list[dict] = [
    {"type": "object", "properties": {}},
    {"type": "object"},
    {},
    {"type": "string", "description": "raw text, not JSON"},
    {"type": "object", "description": "Object-level description.", "properties": {
        "a": {"type": "integer"}, "b": {"type": "number", "default": 1.5}, "c": {"type": "boolean", "default": True},
        "d": {"type": "string", "default": "x\"y"}, "e": {"type": ["string", "null"]},
        "f": {"type": ["integer", "number"], "description": "int or float"}}, "required": ["a", "e"]},
    {"type": "object", "properties": {
        "unit": {"type": "string", "enum": ["c", "f"], "default": "c", "description": "Unit."},
        "tags": {"type": "array", "items": {"type": "string"}},
        "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "anything": {"type": "array"},
        "nested": {"type": "object", "description": "Nested one.", "properties": {
            "x": {"type": "integer", "description": "Deep.", "default": 0},
            "y": {"type": "object", "properties": {"z": {"type": "string", "nullable": True}}, "required": ["z"]}},
            "required": ["x"]},
    }},
    {"type": "object", "properties": {
        "title_and_examples": {"type": "string", "title": "A Title", "examples": ["one", "two", 3]},
        "multi_line": {"type": "string", "description": "first line\nsecond line"},
        "unicode": {"type": "string", "description": "Größe 中文 🙂", "default": "naïve"},
        "any_of": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "ref": {"$ref": "#/definitions/x"},
        "const": {"const": 3},
        "weird_type": {"type": "null"},
        "int_enum": {"type": "integer", "enum": [1, 2], "default": 1},
        "obj_default": {"type": "object", "default": {"k": [1, 2.0, None, "s"]}},
        "null_default": {"type": "string", "default": None, "description": None},
    }},
    {"type": "object", "properties": {
        "choice": {"description": "Pick one.", "default": "a", "oneOf": [
            {"type": "string", "description": "Pick one."},
            {"type": "integer", "description": "A number.", "default": 3},
            {"type": "object", "properties": {"k": {"type": "string"}}, "nullable": True}]},
        "choice2": {"oneOf": [{"type": "string", "enum": ["x", "y"], "default": "x"},
                              {"type": "boolean", "description": "flag"}]},
        "choice3": {"description": "Different.", "oneOf": [{"type": "string", "description": "s"}, {"type": "number"}]},
    }, "required": ["choice"]},
    {"oneOf": [{"type": "string", "description": "as text"}, {"type": "number", "default": 2},
               {"type": "string", "enum": ["p"], "default": "p"}]},
    {"type": "object", "properties": {"small": {"type": "number", "default": 0.00001},
                                      "big": {"type": "number", "default": 1e16},
                                      "tiny": {"type": "number", "default": 1.5e-7},
                                      "neg": {"type": "integer", "default": -7}}},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[f"schema{i}" for i in range(len(SCHEMAS))])
def test_function_schema_renders_like_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding, schema: dict) -> None:
    params = GenerationParams(reasoning_effort="high", tools=(FunctionTool("f", "Does f.\nTwo lines.", schema),))
    messages = [Message("user", "hi")]
    assert render_conversation(messages, params, tok) == _oracle(enc, messages, params)


@pytest.mark.parametrize("builtins, functions, instructions", [
    (builtins, functions, instructions)
    for builtins in [(), ("browser",), ("python",), ("browser", "python"), ("python", "browser")]
    for functions in [(), (WEATHER,), (LOCATION, WEATHER)]
    for instructions in [None, "Always respond in riddles"]
])
def test_tool_combinations_render_like_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding, builtins, functions,
                                              instructions) -> None:
    params = GenerationParams(reasoning_effort="medium", current_date="2025-06-28", builtin_tools=builtins,
                              tools=functions)
    messages = ([Message("developer", instructions)] if instructions else []) + [Message("user", "What's up?")]
    assert render_conversation(messages, params, tok) == _oracle(enc, messages[1 if instructions else 0:], params,
                                                                 instructions)


def test_documented_texts(tok: Tokenizer) -> None:
    # openai/harmony test-data/test_browser_and_python_tool.txt (docs/harmony-tools.md)
    text = system_message_text("medium", "2025-06-28", ("python", "browser"))
    assert text.index("## browser") < text.index("## python")
    assert "// sources=web (default: web)\nnamespace browser {\n\n// Searches for information" in text
    assert "type find = (_: {\npattern: string,\ncursor?: number, // default: -1\n}) => any;\n\n} // namespace browser" \
        in text
    assert f"## python\n\n{PYTHON_DESCRIPTION}\n\n# Valid channels" in text
    assert "Calls to these tools" not in text
    assert "Calls to these tools must go to the commentary channel: 'functions'." in system_message_text(
        "low", None, (), True)
    params = GenerationParams(tools=(WEATHER,))
    rendered = tok.decode(render_conversation([Message("user", "x")], params, tok))
    assert ("# Tools\n\n## functions\n\nnamespace functions {\n\n// Gets the current weather in the provided location."
            "\ntype get_current_weather = (_: {\n// The city and state, e.g. San Francisco, CA\nlocation: string,\n"
            'format?: "celsius" | "fahrenheit", // default: celsius\n}) => any;\n\n} // namespace functions<|end|>'
            ) in rendered


def test_tool_choice_none_leaves_functions_out(tok: Tokenizer) -> None:
    with_tools = render_conversation([Message("user", "x")], GenerationParams(tools=(WEATHER,)), tok)
    none = render_conversation([Message("user", "x")], GenerationParams(tools=(WEATHER,), tool_choice="none"), tok)
    assert none == render_conversation([Message("user", "x")], GenerationParams(), tok)
    assert none != with_tools


def test_tool_round_trip_renders_like_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    """A function call and a browser call in progress, with their results, re-render as harmony does."""
    params = GenerationParams(reasoning_effort="low", builtin_tools=("browser", "python"), tools=(WEATHER,))
    messages = [
        Message("user", "Weather in Tokyo, and search the news"),
        Message("assistant", "Need the weather.", channel="analysis"),
        Message("assistant", '{"location": "Tokyo"}', channel="commentary", recipient="functions.get_current_weather",
                content_type="<|constrain|>json"),
        tool_result("functions.get_current_weather", '{"sunny": true}'),
        Message("assistant", '{"query": "news"}', channel="analysis", recipient="browser.search", content_type="code"),
        tool_result("browser.search", "[0] news\n**viewing lines [0 - 1] of 1**\n\nL0: \nL1: URL: ", channel="analysis"),
        Message("assistant", "import math\nprint(math.sqrt(9001))", channel="analysis", recipient="python",
                content_type="code"),
        tool_result("python", "94.87360012142472\n", channel="analysis"),
    ]
    ours = render_conversation(messages, params, tok)
    assert ours == _oracle(enc, messages, params)
    text = tok.decode(ours)
    assert ("<|start|>assistant to=functions.get_current_weather<|channel|>commentary <|constrain|>json<|message|>"
            '{"location": "Tokyo"}<|call|><|start|>functions.get_current_weather to=assistant<|channel|>commentary'
            '<|message|>{"sunny": true}<|end|>') in text
    assert "<|start|>python to=assistant<|channel|>analysis<|message|>94.87360012142472\n<|end|>" in text


def test_completed_turn_keeps_function_calls_and_results(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    params = GenerationParams(tools=(WEATHER,), builtin_tools=("browser",))
    call = Message("assistant", '{"location": "Paris"}', channel="commentary",
                   recipient="functions.get_current_weather", content_type="<|constrain|>json")
    result = tool_result("functions.get_current_weather", "rain")
    browse = Message("assistant", '{"query": "q"}', channel="analysis", recipient="browser.search", content_type="code")
    page = tool_result("browser.search", "page", channel="analysis")
    messages = [Message("user", "Weather?"), Message("assistant", "think", channel="analysis"), browse, page, call,
                result, Message("assistant", "It rains.", channel="final"), Message("user", "Thanks")]
    expected = [messages[0], call, result, messages[6], messages[7]]
    assert render_conversation(messages, params, tok) == _oracle(enc, expected, params)


def test_response_format_section(tok: Tokenizer) -> None:
    schema = {"properties": {"items": {"type": "array", "description": "entries on the shopping list",
                                       "items": {"type": "string"}}}, "type": "object"}
    params = GenerationParams(response_format=ResponseFormat("shopping_list", schema))
    messages = [Message("developer", "You are a helpful shopping assistant"),
                Message("user", "I need to buy coffee, soda and eggs")]
    text = tok.decode(render_conversation(messages, params, tok))
    # openai/openai-cookbook articles/openai-harmony.md "Structured output"
    assert ("<|start|>developer<|message|># Instructions\n\nYou are a helpful shopping assistant\n\n"
            "# Response Formats\n\n## shopping_list\n\n"
            '{"properties":{"items":{"type":"array","description":"entries on the shopping list","items":'
            '{"type":"string"}}},"type":"object"}<|end|><|start|>user<|message|>I need to buy coffee, soda and eggs'
            "<|end|><|start|>assistant") in text
    with_desc = GenerationParams(response_format=ResponseFormat("x", {"type": "object"}, description="Ünï"),
                                 tools=(LOCATION,))
    text = tok.decode(render_conversation([Message("user", "u")], with_desc, tok))
    assert "} // namespace functions\n\n# Response Formats\n\n## x\n\n// Ünï\n{\"type\":\"object\"}<|end|>" in text


def test_prompt_json_matches_harmony_defaults(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    """Defaults are written with harmony's JSON writer: check a spread of numbers and strings."""
    values = [0, -1, 2**40, 2**70, 0.1, 1.0, -0.0, 1e-5, 1e-4, 123456789.125, 1e15, 1e16, 1e21, 2.5e-300, "a\"\\\n\t\x01é",
              [1, "x", False], {"k": {"n": 1.25}}]
    props = {f"p{i}": {"type": "number", "default": v} for i, v in enumerate(values)}
    params = GenerationParams(tools=(FunctionTool("f", "", {"type": "object", "properties": props}),))
    messages = [Message("user", "x")]
    assert render_conversation(messages, params, tok) == _oracle(enc, messages, params)
    assert prompt_json({"a": [1, 2.0, None, True, "é"]}) == '{"a":[1,2.0,null,true,"é"]}'


def test_sanitised_names() -> None:
    assert sanitize_function_name("get_weather") == "get_weather"
    assert sanitize_function_name("Web Search") == "Web_Search"
    assert sanitize_function_name("get-weather.v2") == "get_weather_v2"
    assert sanitize_function_name("3d") == "_3d"
    assert sanitize_function_name("") == "_"
    tools = [FunctionTool("a-b"), FunctionTool("a_b"), FunctionTool("a.b"), FunctionTool("中文")]
    names = function_names(tools)
    assert names == {"a-b": "a_b_2", "a_b": "a_b", "a.b": "a_b_3", "中文": "__"}
    assert len(set(names.values())) == len(tools)


def test_many_function_tools_in_order(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    tools = tuple(FunctionTool(f"tool_{i}", f"Tool number {i}.", SCHEMAS[i % len(SCHEMAS)]) for i in range(12))
    for combo in itertools.islice(itertools.permutations(tools[:4]), 5):
        params = GenerationParams(tools=combo)
        assert render_conversation([Message("user", "x")], params, tok) == _oracle(enc, [Message("user", "x")],
                                                                                   params)
    assert schema_to_typescript({"type": "array", "items": {"type": "integer"}}) == "number[]"


def test_route_recipient() -> None:
    from engine.harmony_tools import ToolCallTarget, route_recipient

    tools = (FunctionTool("get-weather"), FunctionTool("lookup"))
    both = ("browser", "python")
    assert route_recipient("functions.get_weather", tools) == ToolCallTarget("function", "get-weather")
    assert route_recipient("functions.get-weather", tools) == ToolCallTarget("function", "get-weather")
    assert route_recipient("lookup", tools) == ToolCallTarget("function", "lookup")
    assert route_recipient("browser.search", tools, both) == ToolCallTarget("browser", "search")
    assert route_recipient("functions.browser.open", tools, both) == ToolCallTarget("browser", "open")
    assert route_recipient("python", (), both) == ToolCallTarget("python", "python")
    assert route_recipient("functions.python", (), both) == ToolCallTarget("python", "python")
    assert route_recipient("python", (), ()) == ToolCallTarget("unknown", "python")
    assert route_recipient("browser.fly", tools, both).kind == "unknown"
    assert route_recipient("functions.nope", tools, both).kind == "unknown"
    assert route_recipient("assistant<|channel|>analysis", tools, both).kind == "unknown"
    # a user function called python wins over the built-in
    assert route_recipient("functions.python", (FunctionTool("python"),), both) == ToolCallTarget("function", "python")
