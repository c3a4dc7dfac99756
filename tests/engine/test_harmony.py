"""Harmony rendering (golden, against openai-harmony run offline) and the lenient streaming parser."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# openai-harmony must find the bundled o200k_base.tiktoken instead of downloading it.
os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(ROOT / "resources" / "tokenizer")

import openai_harmony as oh  # noqa: E402

from engine.harmony import (  # noqa: E402
    StreamParser,
    prompt_messages,
    render_conversation,
    stop_tokens,
    system_message_text,
)
from engine.tokenizer import Tokenizer  # noqa: E402
from engine.types import Delta, GenerationParams, Message  # noqa: E402


@pytest.fixture(scope="module")
def enc() -> oh.HarmonyEncoding:
    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


# --- golden renders -------------------------------------------------------------------------------

EFFORTS = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}


def _harmony_render(enc: oh.HarmonyEncoding, messages: list[Message], params: GenerationParams,
                    instructions: str | None) -> list[int]:
    """The oracle: openai-harmony renders the same conversation (messages already CoT-dropped)."""
    system = oh.SystemContent.new().with_reasoning_effort(EFFORTS[params.reasoning_effort])
    if params.current_date:
        system = system.with_conversation_start_date(params.current_date)
    hm = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]
    if instructions is not None:
        hm.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER,
                                                   oh.DeveloperContent.new().with_instructions(instructions)))
    for m in messages:
        if m.role == "user":
            hm.append(oh.Message.from_role_and_content(oh.Role.USER, m.content))
        elif m.role == "assistant":
            msg = oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content).with_channel(m.channel or "final")
            hm.append(msg.with_recipient(m.recipient) if m.recipient else msg)
        elif m.role == "tool":
            author = oh.Author.new(oh.Role.TOOL, m.recipient or "tool")
            msg = oh.Message.from_author_and_content(author, m.content).with_recipient("assistant")
            hm.append(msg.with_channel(m.channel) if m.channel else msg)
    return enc.render_conversation_for_completion(oh.Conversation.from_messages(hm), oh.Role.ASSISTANT)


U, A = "user", "assistant"
CASES: list[tuple[str, list[Message], GenerationParams, list[Message] | None, str | None]] = [
    # (name, our messages, params, messages harmony should see (None = same), instructions)
    ("low_with_developer",
     [Message("developer", "Answer the user's questions like a robot."),
      Message(U, "What is the capital of the largest country in the world?")],
     GenerationParams(reasoning_effort="low"), None, "Answer the user's questions like a robot."),
    ("medium_with_date_no_messages", [], GenerationParams(reasoning_effort="medium", current_date="2025-06-28"),
     None, None),
    ("high_multi_turn",
     [Message(U, "What is 2 + 2?"), Message(A, "2 + 2 equals 4.", channel="final"), Message(U, "What about 9 / 2?")],
     GenerationParams(reasoning_effort="high"), None, None),
    ("drop_earlier_cot",
     [Message(U, "What is 2 + 2?"), Message(A, "Simple arithmetic.", channel="analysis"),
      Message(A, "2 + 2 equals 4.", channel="final"), Message(U, "What about 9 / 2?")],
     GenerationParams(reasoning_effort="medium", current_date="2024-12-31"),
     [Message(U, "What is 2 + 2?"), Message(A, "2 + 2 equals 4.", channel="final"), Message(U, "What about 9 / 2?")],
     None),
    ("drop_cot_of_every_completed_turn",
     [Message("system", "Be brief."), Message(U, "Hi"), Message(A, "greet", channel="analysis"),
      Message(A, "Hello!", channel="final"), Message(U, "Capital of France?"),
      Message(A, "Easy: Paris.", channel="analysis"), Message(A, "preamble", channel="commentary"),
      Message(A, "Paris.", channel="final"), Message(U, "And Spain? 🇪🇸")],
     GenerationParams(reasoning_effort="low"),
     [Message(U, "Hi"), Message(A, "Hello!", channel="final"), Message(U, "Capital of France?"),
      Message(A, "Paris.", channel="final"), Message(U, "And Spain? 🇪🇸")],
     "Be brief."),
    ("in_progress_turn_keeps_analysis_and_tool_call",
     [Message(U, "Weather in SF?"), Message(A, "Need the tool.", channel="analysis"),
      Message(A, '{"location":"SF"}', channel="commentary", recipient="functions.get_weather"),
      Message("tool", '{"sunny": true}', channel="commentary", recipient="functions.get_weather")],
     GenerationParams(reasoning_effort="high", current_date="2025-01-01"), None, None),
    ("unicode_and_literal_specials",
     [Message("developer", "Line one.\nLine two: <|end|>\n\n- bullet"),
      Message(U, "Ünïcödé 中文 🙂 and a literal <|start|>assistant<|message|>"),
      Message(A, "No channel given counts as final.")],
     GenerationParams(reasoning_effort="medium"), None, "Line one.\nLine two: <|end|>\n\n- bullet"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_render_matches_openai_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding, case) -> None:
    _, messages, params, expected_messages, instructions = case
    ours = render_conversation(messages, params, tok)
    theirs = _harmony_render(enc, expected_messages if expected_messages is not None else messages, params,
                             instructions)
    assert ours == theirs
    assert ours[-2:] == [tok.special("<|start|>"), tok.encode("assistant")[0]]


def test_single_turn_drop_agrees_with_harmony_auto_drop(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    # harmony's own auto_drop_analysis handles this case; feed it the analysis too.
    messages = [Message(U, "What is 2 + 2?"), Message(A, "Simple.", channel="analysis"),
                Message(A, "4.", channel="final"), Message(U, "And 3 + 3?")]
    params = GenerationParams(reasoning_effort="low")
    assert render_conversation(messages, params, tok) == _harmony_render(enc, messages, params, None)


def test_documented_system_text() -> None:
    # openai/harmony test-data/test_no_tools.txt (spec §5.1)
    assert system_message_text("medium", "2025-06-28") == (
        "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
        "Current date: 2025-06-28\n\nReasoning: medium\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.")


def test_prompt_messages_rule() -> None:
    msgs = [Message(U, "a"), Message(A, "t", channel="analysis"), Message(A, "f", channel="final"),
            Message(U, "b"), Message(A, "t2", channel="analysis")]
    instructions, kept = prompt_messages(msgs)
    assert instructions is None
    assert [(m.role, m.content) for m in kept] == [(U, "a"), (A, "f"), (U, "b"), (A, "t2")]


def test_stop_tokens(tok: Tokenizer) -> None:
    assert stop_tokens(tok) == {200002, 200012, 199999}
    assert tok.special("<|end|>") not in stop_tokens(tok)


# --- parser ---------------------------------------------------------------------------------------

def _parse(tok: Tokenizer, ids: list[int]) -> tuple[StreamParser, list[Delta]]:
    p = StreamParser(tok)
    deltas = p.feed_many(ids) + p.finish()
    return p, deltas


def _ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, allow_special=True)


def test_parse_typical_reply(tok: Tokenizer) -> None:
    ids = _ids(tok, "<|channel|>analysis<|message|>Think 🙂.<|end|><|start|>assistant<|channel|>final<|message|>"
                    "Answer.<|return|>")
    p, deltas = _parse(tok, ids)
    assert [(m.channel, m.content) for m in p.messages] == [("analysis", "Think 🙂."), ("final", "Answer.")]
    assert "".join(d.text for d in deltas if d.channel == "final") == "Answer."
    assert p.stop_token == tok.special("<|return|>")


@pytest.mark.parametrize("text, expected", [
    # refusal with no header at all
    ("I’m sorry, but I can’t help with that.<|return|>", [("final", "I’m sorry, but I can’t help with that.")]),
    # missing channel
    ("<|message|>Hello there.<|end|>", [("final", "Hello there.")]),
    # channel name glued to the content, no <|message|>
    ("<|channel|>analysisThe user greets.<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|return|>",
     [("analysis", "The user greets."), ("final", "Hi!")]),
    # malformed channel name
    ("<|channel|>xyzzy<|message|>text<|end|>", [("final", "text")]),
    # text after the stop token is ignored
    ("<|channel|>final<|message|>Done.<|return|>garbage<|start|>user<|message|>more", [("final", "Done.")]),
    # missing <|start|> between messages
    ("<|channel|>analysis<|message|>a<|end|><|channel|>final<|message|>b<|return|>", [("analysis", "a"), ("final", "b")]),
    # <|start|> without <|end|> before it; stray control tokens in content
    ("<|channel|>analysis<|message|>x<|constrain|>y<|message|>z<|start|>assistant<|channel|>final<|message|>w",
     [("analysis", "xyz"), ("final", "w")]),
    # recipient after the channel (what the model really emits for tool calls)
    ("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>", [("commentary", "{}")]),
    # built-in tool calls with the `code` content type
    ('<|channel|>analysis to=browser.search code<|message|>{"query": "x"}<|call|>', [("analysis", '{"query": "x"}')]),
    ("<|channel|>analysis to=python code<|message|>print(1)<|call|>", [("analysis", "print(1)")]),
    # <|start|>assistant<|channel|> left out after <|end|> (openai/harmony#60: "Unexpected token 12606")
    ("<|channel|>analysis<|message|>a<|end|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
     [("analysis", "a"), ("commentary", "{}")]),
    # repeated channel marker
    ("<|channel|>final<|channel|>final<|message|>ok<|return|>", [("final", "ok")]),
    # header cut off by the end of the stream
    ("<|channel|>fin", []),
])
def test_lenient_cases(tok: Tokenizer, text: str, expected: list[tuple[str, str]]) -> None:
    p, deltas = _parse(tok, _ids(tok, text))
    assert [(m.channel, m.content) for m in p.messages if m.content] == expected
    joined = "".join(d.text for d in deltas)
    assert joined == "".join(c for _, c in expected)


def test_tool_call_message_keeps_content_type(tok: Tokenizer) -> None:
    p, deltas = _parse(tok, _ids(tok, "<|channel|>analysis to=browser.search code<|message|>{}<|call|>"))
    assert p.final_messages() == [Message("assistant", "{}", channel="analysis", recipient="browser.search",
                                          content_type="code")]
    assert [(d.recipient, d.content_type) for d in deltas] == [("browser.search", "code")]
    p, _ = _parse(tok, _ids(tok, "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>"))
    assert p.final_messages()[0].content_type == "<|constrain|>json"


def test_header_words_that_are_prose_become_content(tok: Tokenizer) -> None:
    # the model forgot <|message|>: words that cannot be a recipient or content type are the answer
    p, deltas = _parse(tok, _ids(tok, "<|channel|>final Yes, of course.<|return|>"))
    assert [(m.channel, m.recipient, m.content) for m in p.messages] == [("final", None, " Yes, of course.")]
    p, deltas = _parse(tok, _ids(tok, "<|channel|>final Hello there<|return|>"))
    assert "".join(d.text for d in deltas) == " Hello there"


def test_tool_call_recipient(tok: Tokenizer) -> None:
    p, deltas = _parse(tok, _ids(tok, "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                                      '{"a":1}<|call|>'))
    assert p.messages[0].recipient == "functions.get_weather"
    assert p.stop_token == tok.special("<|call|>")
    assert deltas and all(d.recipient == "functions.get_weather" for d in deltas)
    assert "".join(d.text for d in deltas) == '{"a":1}'


TOOL_CALL_STREAMS = [
    # reasoning, then a tool call with the recipient after the channel (what gpt-oss emits)
    "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.get_weather <|constrain|>json<|message|>{"location": "Tokyo"}<|call|>',
    # recipient before the channel
    "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant to=functions.lookup<|channel|>commentary json"
    '<|message|>{"q": "中文 🙂"}<|call|>',
    # a preamble to the user (commentary, no recipient), then the call
    "<|channel|>commentary<|message|>Checking…<|end|><|start|>assistant<|channel|>commentary to=functions.f "
    "<|constrain|>json<|message|>{}<|call|>",
    # built-in tools: the content type is `code` (openai/harmony test-data; third-party logs for python)
    '<|channel|>analysis to=browser.search code<|message|>{"query": "news", "topn": 10}<|call|>',
    "<|channel|>commentary to=browser.search code<|message|>{\"query\": \"current US president\"}<|call|>",
    "<|channel|>analysis<|message|>Compute.<|end|><|start|>assistant<|channel|>analysis to=python code<|message|>"
    "import math\nprint(math.sqrt(9001))<|call|>",
    "<|channel|>commentary to=functions.f code<|message|>x = 1<|call|>",
    "<|channel|>commentary to=functions.f <|constrain|>code<|message|>x = 1<|call|>",
    # no space before <|constrain|> (harmony inserts one)
    "<|channel|>commentary to=functions.f<|constrain|>json<|message|>{}<|call|>",
    # recipient and content type before the channel (harmony's test_simple_tool_call)
    "<|channel|>analysis<|message|>a<|end|><|start|>assistant to=functions.lookup_weather<|channel|>analysis code"
    '<|message|>{"location": "SF"}<|call|>',
    # a bare tool name without `to=`
    "<|channel|>commentary functions.get_weather <|constrain|>json<|message|>{}<|call|>",
]


@pytest.mark.parametrize("text", TOOL_CALL_STREAMS)
def test_delta_recipient_matches_openai_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding, text: str) -> None:
    """Per generated token, our delta's (channel, recipient) is what StreamableParser reports for it."""
    ids = _ids(tok, text)
    ref = oh.StreamableParser(enc, oh.Role.ASSISTANT)
    p = StreamParser(tok)
    ref_chars: list[tuple[str | None, str | None]] = []
    our_chars: list[tuple[str | None, str | None]] = []
    for t in ids:
        ref.process(t)
        if ref.last_content_delta:
            ref_chars += [(ref.current_channel, ref.current_recipient, ref.current_content_type)] * len(
                ref.last_content_delta)
        for d in p.feed(t):
            our_chars += [(d.channel, d.recipient, d.content_type)] * len(d.text)
    for d in p.finish():
        our_chars += [(d.channel, d.recipient, d.content_type)] * len(d.text)
    assert our_chars == ref_chars
    assert any(r is not None for _, r, _ in ref_chars)   # the stream really holds a tool call
    assert [(m.recipient, m.content_type) for m in p.messages] == [(m.recipient, m.content_type)
                                                                   for m in ref.messages]


def _random_wellformed(rng: random.Random, tok: Tokenizer) -> list[int]:
    words = ["Hello", " world", " 🙂", " 中文", "\n", " ქართული", " 2 + 2", ",", " the", " 🏳️‍🌈", " Ünï"]
    ids: list[int] = []
    n = rng.randint(1, 4)
    for k in range(n):
        if k:
            ids += _ids(tok, "<|start|>assistant")
        channel = "final" if k == n - 1 else rng.choice(["analysis", "commentary"])
        header = f"<|channel|>{channel}"
        r = rng.random()
        if channel == "commentary" and r < 0.4:
            header += " to=functions.f " + rng.choice(["<|constrain|>json", "json", "code", "<|constrain|>code"])
        elif channel == "commentary" and r < 0.7:
            header = " to=functions.g" + header + " json"   # recipient before the channel
        elif channel == "analysis" and r < 0.3:
            header += rng.choice([" to=browser.search code", " to=python code", " to=browser.open"])
        ids += _ids(tok, header + "<|message|>")
        ids += tok.encode("".join(rng.choice(words) for _ in range(rng.randint(1, 12))))
        ids += _ids(tok, "<|return|>" if k == n - 1 else "<|end|>")
    return ids


def test_parser_agrees_with_openai_harmony(tok: Tokenizer, enc: oh.HarmonyEncoding) -> None:
    rng = random.Random(1)
    for _ in range(60):
        ids = _random_wellformed(rng, tok)
        ref = oh.StreamableParser(enc, oh.Role.ASSISTANT)
        ref_deltas: list[tuple[str, str]] = []
        ref_recipients: list[tuple[str | None, str]] = []
        for t in ids:
            ref.process(t)
            if ref.last_content_delta:
                ref_deltas.append((ref.current_channel, ref.last_content_delta))
                ref_recipients.append((ref.current_recipient, ref.last_content_delta))
        p, deltas = _parse(tok, ids)
        theirs = [(m.channel, m.recipient, m.content_type, "".join(c.text for c in m.content)) for m in ref.messages]
        ours = [(m.channel, m.recipient, m.content_type, m.content) for m in p.messages]
        assert ours == theirs
        assert "".join(d.text for d in deltas) == "".join(t for _, t in ref_deltas)
        assert [d.channel for d in deltas for _ in d.text] == [c for c, t in ref_deltas for _ in t]
        assert [d.recipient for d in deltas for _ in d.text] == [r for r, t in ref_recipients for _ in t]


CONTROL_NAMES = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>",
                 "<|endoftext|>", "<|reserved_200010|>", "<|startoftext|>"]


def test_fuzz_random_streams_never_raise_or_leak(tok: Tokenizer) -> None:
    rng = random.Random(2)
    specials = [tok.special(n) for n in CONTROL_NAMES]
    # text tokens from text with no '<' or '|' so a leaked control name would be visible
    text_pool = tok.encode("analysis final commentary assistant to=functions.x json Hello 🙂 中文 ქართული 𝔘 , .\n")
    text_pool += [rng.randrange(0, 199998) for _ in range(200)]
    text_pool = [t for t in text_pool if b"<" not in tok.token_bytes(t) and b"|" not in tok.token_bytes(t)]
    for _ in range(300):
        n = rng.randint(0, 60)
        ids = [rng.choice(specials) if rng.random() < 0.3 else rng.choice(text_pool) for _ in range(n)]
        p, deltas = _parse(tok, ids)
        text = "".join(d.text for d in deltas)
        assert "<|" not in text and "|>" not in text
        assert text == "".join(m.content for m in p.messages)
        assert all(d.channel in ("analysis", "commentary", "final") and d.text for d in deltas)


def test_fuzz_truncated_wellformed_streams(tok: Tokenizer) -> None:
    rng = random.Random(3)
    for _ in range(80):
        ids = _random_wellformed(rng, tok)
        full, _ = _parse(tok, ids)
        cut = rng.randint(0, len(ids))
        p, deltas = _parse(tok, ids[:cut])
        text = "".join(d.text for d in deltas)
        assert "<|" not in text
        # what was shown of a truncated stream is a prefix of the full stream's text
        full_text = "".join(m.content for m in full.messages)
        assert full_text.startswith(text.rstrip("\ufffd"))
