"""A scripted stand-in for `engine.Engine`: streams analysis deltas then final deltas, like gpt-oss."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from app.messages import LoadModel
from engine.types import (
    ChatEvent,
    DecodeProgress,
    Delta,
    Finished,
    GenerationParams,
    Message,
    ModelInfo,
    PrefillProgress,
    Usage,
)

DEFAULT_ANALYSIS = ["The user ", "asks for ", "a greeting. ", "Answer briefly."]
DEFAULT_FINAL = ["Hello", "! Here ", "is code:\n\n```python\n", "print('hi')\n", "```\n"]


def fake_info(path: Path = Path("/models/fake-oss"), max_context: int = 8192) -> ModelInfo:
    return ModelInfo(name=path.name, path=path, layout="original", num_layers=2, num_experts=4,
                     experts_per_token=2, params_total=1_000_000, params_active=250_000,
                     bytes_on_disk=123_456, memory_needed_bytes=456_789, max_context=max_context,
                     device="cpu", backend="cpu-avx2", fallback_reason=None)   # a CPU-only laptop: not a fallback


@dataclass
class FakeEngine:
    """Streams `analysis` then `final` pieces; one Finished. `delay` seconds between pieces."""

    analysis: list[str] = field(default_factory=lambda: list(DEFAULT_ANALYSIS))
    final: list[str] = field(default_factory=lambda: list(DEFAULT_FINAL))
    delay: float = 0.0
    raise_on_chat: Exception | None = None
    error_finish: str | None = None
    finish_reason: str = "stop"          # the Finished.reason of a reply that runs to its end
    tool_call: tuple[str, list[str]] | None = None   # (recipient, argument pieces) streamed after `final`
    path: Path = Path("/models/fake-oss")
    max_context: int = 8192
    calls: list[tuple[Message, ...]] = field(default_factory=list)
    params: list[GenerationParams] = field(default_factory=list)
    closed: bool = False
    gate: threading.Event | None = None   # when set, streaming waits on it before each piece
    replies: int = 0
    prompt_tokens: int = 10                # PrefillProgress in chunks of `prefill_chunk` before the pieces
    prefill_chunk: int = 256
    prefill_delay: float = 0.0             # seconds per prefill chunk
    reused_tokens: int = 0

    @property
    def info(self) -> ModelInfo:
        return fake_info(self.path, self.max_context)

    def new_session(self) -> object:
        return object()

    def chat(self, session: Any, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        self.calls.append(tuple(messages))
        self.params.append(params)
        if self.raise_on_chat is not None:
            raise self.raise_on_chat
        self.replies += 1
        return self._stream(should_stop)

    def _stream(self, should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        n = 0
        start = time.perf_counter()
        total = max(0, self.prompt_tokens - self.reused_tokens)
        for done in range(min(total, self.prefill_chunk), total + self.prefill_chunk, self.prefill_chunk):
            if should_stop():
                yield Finished("cancelled", Usage(prompt_tokens=self.prompt_tokens, completion_tokens=0))
                return
            if self.prefill_delay:
                time.sleep(self.prefill_delay)
            yield PrefillProgress(min(done, total), total, time.perf_counter() - start, self.reused_tokens)
            if done >= total:
                break
        decode_start = time.perf_counter()
        pieces: list[tuple[str, str, str | None]] = [("analysis", t, None) for t in self.analysis]
        pieces += [("final", t + (f" (reply {self.replies})" if i == len(self.final) - 1 else ""), None)
                   for i, t in enumerate(self.final)]
        if self.tool_call is not None:
            pieces += [("commentary", t, self.tool_call[0]) for t in self.tool_call[1]]
        for channel, text, recipient in pieces:
            if self.gate is not None:
                self.gate.wait(5)
            if should_stop():
                yield Finished("cancelled", Usage(prompt_tokens=self.prompt_tokens, completion_tokens=n))
                return
            if self.delay:
                time.sleep(self.delay)
            n += 1
            yield Delta(channel, text, recipient)  # type: ignore[arg-type]
            yield DecodeProgress(n, time.perf_counter() - decode_start)
        if self.error_finish is not None:
            yield Finished("error", Usage(prompt_tokens=self.prompt_tokens, completion_tokens=n),
                           error=self.error_finish, error_kind="user")
            return
        yield Finished(self.finish_reason,  # type: ignore[arg-type]
                       Usage(prompt_tokens=self.prompt_tokens, reused_tokens=self.reused_tokens, completion_tokens=n,
                             decode_tokens_per_s=42.0, time_to_first_token_s=0.25))

    def close(self) -> None:
        self.closed = True


class FakeFactory:
    """An engine_factory returning one FakeEngine (or raising `fail`), recording the requests.

    `check(request)` is the worker's folder check before unloading: it raises `refuse` when set."""

    def __init__(self, engine: FakeEngine | None = None, fail: Exception | None = None) -> None:
        self.engine = engine or FakeEngine()
        self.fail = fail
        self.refuse: Exception | None = None
        self.load_gate: threading.Event | None = None   # when set, a load waits on it (then reports "Ready")
        self.requests: list[LoadModel] = []

    def check(self, request: LoadModel) -> None:
        if self.refuse is not None:
            raise self.refuse

    def __call__(self, request: LoadModel, progress: Callable[[float, str], None]) -> FakeEngine:
        self.requests.append(request)
        progress("Reading weights", 0.5)  # the order engine.Engine.load uses
        if self.load_gate is not None:
            self.load_gate.wait(5)
            progress("Ready", 1.0)
        if self.fail is not None:
            raise self.fail
        self.engine.path = Path(request.model_dir)
        self.engine.max_context = request.max_context
        return self.engine

