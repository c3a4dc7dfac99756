"""A scripted stand-in for `engine.Engine`: streams analysis deltas then final deltas, like gpt-oss."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from app.messages import LoadModel
from engine.types import ChatEvent, Delta, Finished, GenerationParams, Message, ModelInfo, Usage

DEFAULT_ANALYSIS = ["The user ", "asks for ", "a greeting. ", "Answer briefly."]
DEFAULT_FINAL = ["Hello", "! Here ", "is code:\n\n```python\n", "print('hi')\n", "```\n"]


def fake_info(path: Path = Path("/models/fake-oss"), max_context: int = 8192) -> ModelInfo:
    return ModelInfo(name=path.name, path=path, layout="original", num_layers=2, num_experts=4,
                     experts_per_token=2, params_total=1_000_000, params_active=250_000,
                     bytes_on_disk=123_456, memory_needed_bytes=456_789, max_context=max_context,
                     device="cpu", backend="cpu-reference", fallback_reason="CUDA is not available")


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
        pieces: list[tuple[str, str, str | None]] = [("analysis", t, None) for t in self.analysis]
        pieces += [("final", t + (f" (reply {self.replies})" if i == len(self.final) - 1 else ""), None)
                   for i, t in enumerate(self.final)]
        if self.tool_call is not None:
            pieces += [("commentary", t, self.tool_call[0]) for t in self.tool_call[1]]
        for channel, text, recipient in pieces:
            if self.gate is not None:
                self.gate.wait(5)
            if should_stop():
                yield Finished("cancelled", Usage(prompt_tokens=10, completion_tokens=n))
                return
            if self.delay:
                time.sleep(self.delay)
            n += 1
            yield Delta(channel, text, recipient)  # type: ignore[arg-type]
        if self.error_finish is not None:
            yield Finished("error", Usage(prompt_tokens=10, completion_tokens=n), error=self.error_finish)
            return
        yield Finished(self.finish_reason,  # type: ignore[arg-type]
                       Usage(prompt_tokens=10, completion_tokens=n, decode_tokens_per_s=42.0,
                             time_to_first_token_s=0.25))

    def close(self) -> None:
        self.closed = True


class FakeFactory:
    """An engine_factory returning one FakeEngine (or raising `fail`), recording the requests."""

    def __init__(self, engine: FakeEngine | None = None, fail: Exception | None = None) -> None:
        self.engine = engine or FakeEngine()
        self.fail = fail
        self.requests: list[LoadModel] = []

    def __call__(self, request: LoadModel, progress: Callable[[float, str], None]) -> FakeEngine:
        self.requests.append(request)
        progress("Reading weights", 0.5)  # the order engine.Engine.load uses
        if self.fail is not None:
            raise self.fail
        self.engine.path = Path(request.model_dir)
        self.engine.max_context = request.max_context
        return self.engine

