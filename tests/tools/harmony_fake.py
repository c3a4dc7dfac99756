"""A scripted ChatEngine that speaks harmony tokens: each reply is harmony text turned into real token
ids and parsed by the real StreamParser, and the prompt is rendered by the real renderer, with a
per-session token list standing in for the KV cache (longest common prefix reused, like Engine).
Torch-free, fast; used by the round-trip tests and the window's tool screenshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.harmony import StreamParser, render_conversation
from engine.tokenizer import Tokenizer, load_tokenizer
from engine.types import ChatEvent, Finished, GenerationParams, Message, ModelInfo, Usage

_TOKENIZER: list[Tokenizer] = []


def tokenizer() -> Tokenizer:
    if not _TOKENIZER:
        _TOKENIZER.append(load_tokenizer())
    return _TOKENIZER[0]


@dataclass
class FakeSession:
    tokens: list[int] = field(default_factory=list)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class HarmonyScriptEngine:
    """`replies`: the harmony text of each successive reply (after the prompt's `<|start|>assistant`),
    ending with <|call|> (a tool call) or <|return|>; when they run out, `default_reply` is used."""

    replies: list[str] = field(default_factory=list)
    default_reply: str = "<|channel|>final<|message|>Done.<|return|>"
    delay: float = 0.0
    path: Path = Path("/models/scripted-harmony")
    max_context: int = 8192
    calls: list[tuple[Message, ...]] = field(default_factory=list)
    params: list[GenerationParams] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    closed: bool = False
    gate: threading.Event | None = None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.path.name, path=self.path, layout="original", num_layers=2, num_experts=4,
                         experts_per_token=2, params_total=1, params_active=1, bytes_on_disk=1,
                         memory_needed_bytes=1, max_context=self.max_context, device="cpu", backend="scripted")

    def new_session(self) -> FakeSession:
        return FakeSession()

    def chat(self, session: FakeSession, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        self.calls.append(tuple(messages))
        self.params.append(params)
        tok = tokenizer()
        prompt = render_conversation(messages, params, tok)
        self.prompts.append(prompt)
        reused = min(common_prefix(session.tokens, prompt), len(prompt) - 1)
        text = self.replies.pop(0) if self.replies else self.default_reply
        return self._stream(session, prompt, reused, tok.encode(text, allow_special=True), should_stop)

    def _stream(self, session: FakeSession, prompt: list[int], reused: int, reply: list[int],
                should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        tok = tokenizer()
        parser = StreamParser(tok)
        generated: list[int] = []
        stops = {tok.special("<|return|>"), tok.special("<|call|>")}
        reason = "length"
        for token in reply:
            if self.gate is not None:
                self.gate.wait(5)
            if should_stop():
                reason = "cancelled"
                break
            if self.delay:
                time.sleep(self.delay)
            generated.append(token)
            yield from parser.feed(token)
            if token in stops:
                reason = "tool_call" if token == tok.special("<|call|>") else "stop"
                break
        yield from parser.finish()
        session.tokens = prompt + generated
        yield Finished(reason, Usage(prompt_tokens=len(prompt), reused_tokens=reused,  # type: ignore[arg-type]
                                     completion_tokens=len(generated), decode_tokens_per_s=50.0))

    def close(self) -> None:
        self.closed = True


def scripted_factory(engine: HarmonyScriptEngine) -> Callable[[Any, Any], HarmonyScriptEngine]:
    def factory(request: Any, progress: Callable[[float, str], None]) -> HarmonyScriptEngine:
        progress(0.5, "Reading weights")
        engine.path = Path(request.model_dir)
        return engine
    return factory
