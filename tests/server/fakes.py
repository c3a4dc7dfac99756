"""A scripted engine for the API tests: it 'generates' harmony text given in advance, token by token.

It satisfies what the server needs from `engine.api.Engine` (info, tokenizer, render, new_session,
chat) and parses its tokens with the real harmony StreamParser, so the server sees exactly the
deltas a real model writing those tokens would produce.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ContextFull
from engine.harmony import StreamParser, render_conversation
from engine.tokenizer import Tokenizer, load_tokenizer
from engine.types import ChatEvent, Finished, GenerationParams, Message, ModelInfo, Usage


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    return load_tokenizer()


def fake_info(max_context: int = 4096) -> ModelInfo:
    return ModelInfo(name="openai/gpt-oss-20b", path=Path("/nonexistent"), layout="huggingface", num_layers=1,
                     num_experts=1, experts_per_token=1, params_total=0, params_active=0, bytes_on_disk=0,
                     memory_needed_bytes=0, max_context=max_context, device="cpu", backend="fake")


@dataclass
class FakeSession:
    tokens: tuple[int, ...] = ()
    own_cache: bool = False

    def close(self) -> None:
        self.tokens = ()


@dataclass
class FakeEngine:
    """Each chat() consumes the next script (harmony text of the reply, e.g. "<|channel|>final<|message|>Hi<|return|>")."""

    scripts: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    max_context: int = 4096
    tokenizer: Tokenizer = field(default_factory=_tokenizer)
    calls: list[tuple[list[Message], GenerationParams]] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    produced: list[int] = field(default_factory=list)      # tokens yielded per call
    stopped_early: list[bool] = field(default_factory=list)
    gate: threading.Event | None = None                    # when set: chat waits for it before generating

    @property
    def info(self) -> ModelInfo:
        return fake_info(self.max_context)

    def render(self, messages: Sequence[Message], params: GenerationParams) -> list[int]:
        return render_conversation(messages, params, self.tokenizer)

    def new_session(self, own_cache: bool = False) -> FakeSession:
        return FakeSession(own_cache=own_cache)

    def chat(self, session: FakeSession, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        prompt = self.render(messages, params)
        if len(prompt) + min(params.max_tokens, 64) > self.max_context:
            raise ContextFull(len(prompt) + min(params.max_tokens, 64), self.max_context)
        self.calls.append((list(messages), params))
        self.prompts.append(prompt)
        script = self.scripts.pop(0) if self.scripts else "<|channel|>final<|message|>ok<|return|>"
        return self._events(session, prompt, script, params, should_stop)

    def _events(self, session: FakeSession, prompt: list[int], script: str, params: GenerationParams,
                should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        reused = 0
        while reused < min(len(prompt) - 1, len(session.tokens)) and session.tokens[reused] == prompt[reused]:
            reused += 1
        if self.gate is not None:
            self.gate.wait(10)
        ids = self.tokenizer.encode(script, allow_special=True)
        parser = StreamParser(self.tokenizer)
        generated: list[int] = []
        reason = "length"
        self.produced.append(0)
        self.stopped_early.append(False)
        for token in ids[:params.max_tokens]:
            if should_stop():
                reason = "cancelled"
                self.stopped_early[-1] = True
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            generated.append(token)
            self.produced[-1] += 1
            yield from parser.feed(token)
            if parser.done:
                reason = "tool_call" if token == self.tokenizer.special("<|call|>") else "stop"
                break
        yield from parser.finish()
        session.tokens = tuple(prompt + generated[:-1])
        yield Finished(reason, Usage(prompt_tokens=len(prompt), reused_tokens=reused,
                                     completion_tokens=len(generated)))
