"""Structured output: the JSON-Schema grammar holds inside the final message's body only (tiny random model)."""

from __future__ import annotations

import json

import pytest
import torch

from engine.harmony import stop_tokens
from engine.structured import FinalChannelConstraint, SchemaError, grammar_for
from engine.tokenizer import Tokenizer
from engine.types import GenerationParams, Message, ResponseFormat

SCHEMA = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
          "required": ["color", "ok"], "additionalProperties": False}


class ScriptThenGreedy:
    """A sampler: the scripted tokens first (whatever the logits say), then argmax of what it is given."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.masked: list[bool] = []          # per call: were any logits masked to -inf?

    def __call__(self, logits: torch.Tensor) -> int:
        self.masked.append(bool(torch.isinf(logits).any()))
        if self.script:
            return self.script.pop(0)
        return int(torch.argmax(logits))


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from engine.api import Engine

    return Engine.load(tiny_model_dir, device="cpu", max_context=512)


def _run(engine, sampler, max_new: int) -> list[int]:
    from engine.generate import generate
    from engine.kv_cache import KVCache

    prompt = engine.render([Message("user", "Pick a color.")], GenerationParams(response_format=ResponseFormat(
        "pick", SCHEMA)))
    cache = KVCache(engine.config, 512, "cpu")
    return list(generate(engine.model, cache, prompt, max_new_tokens=max_new, sampler=sampler,
                         stop_tokens=stop_tokens(engine.tokenizer)))


def test_grammar_constrains_only_the_final_body(engine, tok: Tokenizer) -> None:
    header = tok.encode("<|channel|>analysis<|message|>free thoughts 🙂<|end|><|start|>assistant<|channel|>final"
                        "<|message|>", allow_special=True)
    base = ScriptThenGreedy(header)
    constraint = FinalChannelConstraint(base, tok, ResponseFormat("pick", SCHEMA))
    out = _run(engine, constraint, len(header) + 40)
    assert out[:len(header)] == header
    assert not any(base.masked[:len(header)])           # reasoning and headers were sampled freely
    assert all(base.masked[len(header):])                # the body was constrained from its first token
    body = out[len(header):]
    assert body[-1] == tok.special("<|return|>")
    value = json.loads(tok.decode(body[:-1]))
    assert set(value) == {"color", "ok"} and value["color"] in ("red", "green", "blue") and isinstance(value["ok"], bool)


def test_a_tool_call_body_is_not_constrained(engine, tok: Tokenizer) -> None:
    header = tok.encode("<|channel|>commentary to=functions.f <|constrain|>json<|message|>", allow_special=True)
    base = ScriptThenGreedy(header)
    _run(engine, FinalChannelConstraint(base, tok, ResponseFormat("pick", SCHEMA)), len(header) + 5)
    assert not any(base.masked)


def test_unconstrained_random_model_runs_through_engine_chat(engine) -> None:
    params = GenerationParams(temperature=1.0, seed=3, max_tokens=24, response_format=ResponseFormat("pick", SCHEMA))
    events = list(engine.chat(engine.new_session(), [Message("user", "hi")], params))
    assert events[-1].reason in ("stop", "length", "tool_call")


def test_bad_schema_is_a_user_error() -> None:
    with pytest.raises(SchemaError, match="Invalid type"):
        grammar_for(ResponseFormat("x", {"type": "objectx"}))


class GreedyAvoiding:
    """Argmax of what it is given, never `avoid` unless nothing else is allowed; records the logits it saw."""

    def __init__(self, avoid: list[int], script: list[int] | None = None) -> None:
        self.avoid = avoid
        self.script = list(script or [])
        self.seen: list[torch.Tensor] = []

    def __call__(self, logits: torch.Tensor) -> int:
        self.seen.append(logits.clone())
        if self.script:
            return self.script.pop(0)
        pick = logits.clone()
        if torch.isfinite(pick).sum() > len(self.avoid):
            pick[self.avoid] = float("-inf")
        return int(torch.argmax(pick))


def test_required_tool_choice_forces_a_call_to_the_named_function(engine, tok: Tokenizer) -> None:
    from engine.generate import generate
    from engine.kv_cache import KVCache
    from engine.structured import RequiredToolCall
    from engine.types import FunctionTool

    tools = (FunctionTool("get-weather", "Weather.", {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}},
                                                      "required": ["unit"], "additionalProperties": False}),
             FunctionTool("other", "Other."))
    params = GenerationParams(tools=tools, tool_choice="required", allowed_tools=("get-weather",), max_tokens=60)
    prompt = engine.render([Message("user", "Weather?")], params)
    # reason a little first (scripted), then let the (random) model go greedily, avoiding more analysis
    script = tok.encode("<|channel|>analysis<|message|>Let me think.<|end|>", allow_special=True)
    base = GreedyAvoiding([tok.encode("analysis")[0]], script)
    sampler = RequiredToolCall(base, tok, params)
    out = list(generate(engine.model, KVCache(engine.config, 512, "cpu"), prompt, max_new_tokens=80, sampler=sampler,
                        stop_tokens=stop_tokens(tok)))
    text = tok.decode(out)
    head = "<|channel|>analysis<|message|>Let me think.<|end|><|start|>assistant<|channel|>commentary " \
           "to=functions.get_weather <|constrain|>json<|message|>"
    assert text.startswith(head) and out[-1] == tok.special("<|call|>"), text
    assert json.loads(text[len(head):-len("<|call|>")])["unit"] in ("c", "f")
    assert sampler.called == "get-weather"
    # after <|channel|> in the header, "final" was never allowed
    final = tok.encode("final")[0]
    channel_step = len(script) + 3        # <|start|>, assistant, <|channel|> follow the scripted analysis
    assert not torch.isfinite(base.seen[channel_step][final])
