"""Lantern messages -> Chat Completions messages: the harmony rules for what the server sees."""

from __future__ import annotations

from app.remote.conversation import openai_messages
from engine.harmony import prompt_messages
from engine.types import Message


def test_what_the_server_sees_is_what_harmony_keeps() -> None:
    """Earlier reasoning dropped, later system messages kept: the rule is engine.harmony's, not restated."""
    messages = [Message("system", "Be brief."), Message("user", "weather?"),
                Message("assistant", "need tool", channel="analysis"),
                Message("assistant", '{"city":"Oslo"}', channel="commentary", recipient="functions.get_weather"),
                Message("tool", '{"temp": 3}', channel="commentary", recipient="functions.get_weather"),
                Message("assistant", "3 °C.", channel="final"),
                Message("developer", "Answer in French."), Message("user", "and tomorrow?")]
    sent = openai_messages(messages)
    instructions, kept = prompt_messages(messages)
    assert sent[0] == {"role": "system", "content": "Be brief.\n\nAnswer in French."} and instructions == sent[0]["content"]
    texts = [m.get("content") or m.get("tool_calls", [{}])[0].get("function", {}).get("arguments") for m in sent[1:]]
    assert texts == [m.content for m in kept]
    assert not any("need tool" in str(m) for m in sent)          # the earlier chain of thought is gone
    assert sent[-1] == {"role": "user", "content": "and tomorrow?"}


def test_a_tool_turn_in_progress_keeps_its_reasoning_and_links_the_result_to_its_call() -> None:
    messages = [Message("user", "weather in Oslo and Rome?"),
                Message("assistant", "Two calls.", channel="analysis"),
                Message("assistant", "Checking.", channel="commentary"),
                Message("assistant", '{"city":"Oslo"}', channel="commentary", recipient="functions.get_weather"),
                Message("tool", '{"temp": 3}', channel="commentary", recipient="functions.get_weather"),
                Message("assistant", "Now Rome.", channel="analysis"),
                Message("assistant", '{"city":"Rome"}', channel="commentary", recipient="functions.get_weather"),
                Message("tool", '{"temp": 18}', channel="commentary", recipient="functions.get_weather")]
    assert openai_messages(messages) == [
        {"role": "user", "content": "weather in Oslo and Rome?"},
        {"role": "assistant", "content": "Checking.", "reasoning": "Two calls.", "reasoning_content": "Two calls.",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'},
        {"role": "assistant", "content": None, "reasoning": "Now Rome.", "reasoning_content": "Now Rome.",
         "tool_calls": [{"id": "call_2", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 18}'},
    ]


def test_a_result_without_its_call_is_left_out() -> None:
    messages = [Message("user", "hi"), Message("tool", "orphan", recipient="functions.x")]
    assert openai_messages(messages) == [{"role": "user", "content": "hi"}]


def test_a_result_named_by_tool_name_answers_its_call() -> None:
    """engine.types.tool_result() names the tool in `tool_name` (recipient "assistant")."""
    import pytest

    if "tool_name" not in Message.__dataclass_fields__:
        pytest.skip("Message.tool_name (the engine's tool support) has not landed on this branch")
    from engine.types import tool_result  # type: ignore[attr-defined]

    messages = [Message("user", "weather?"),
                Message("assistant", '{"city":"Oslo"}', channel="commentary", recipient="functions.get_weather"),
                tool_result("functions.get_weather", '{"temp": 3}')]
    assert openai_messages(messages)[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'}
