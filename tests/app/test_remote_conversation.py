"""Lantern messages -> Chat Completions messages: the harmony rules for what the server sees."""

from __future__ import annotations

from app.remote.conversation import openai_messages
from engine.harmony import prompt_messages
from engine.types import Message


def test_earlier_reasoning_and_tool_traffic_are_dropped_later_system_messages_kept() -> None:
    messages = [Message("system", "Be brief."), Message("user", "weather?"),
                Message("assistant", "need tool", channel="analysis"),
                Message("assistant", '{"city":"Oslo"}', channel="commentary", recipient="functions.get_weather"),
                Message("tool", '{"temp": 3}', channel="commentary", recipient="functions.get_weather"),
                Message("assistant", "3 °C.", channel="final"),
                Message("developer", "Answer in French."), Message("user", "and tomorrow?")]
    assert openai_messages(messages) == [
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "3 °C."},
        {"role": "user", "content": "and tomorrow?"},
    ]
    # the same messages survive as harmony's renderer keeps them
    instructions, kept = prompt_messages(messages)
    assert instructions == "Be brief.\n\nAnswer in French."
    assert [m.content for m in kept] == ["weather?", "3 °C.", "and tomorrow?"]


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
