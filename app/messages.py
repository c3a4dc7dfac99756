"""Every type that crosses the worker queue, both ways. Qt-free and torch-free.

GUI -> worker: `Request` (LoadModel, UnloadModel, StartChat, Shutdown), put on a queue.
Worker -> GUI: `Event`, delivered through one Qt signal. Each event carries the `request_id` of
the request it answers, so the GUI can drop events of a turn it has cancelled or replaced.
Cancelling a turn is not a message: it is a `threading.Event` read between tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from app.remote.target import RemoteTarget
from engine.types import FinishReason, GenerationParams, Message, ModelInfo, Usage

# ---------------------------------------------------------------- GUI -> worker


@dataclass(frozen=True, slots=True)
class LoadModel:
    request_id: int
    model_dir: Path
    device: str = "auto"              # "auto" | "cpu" | "cuda" | "mps"
    max_context: int = 8192
    cpu_threads: int = 0              # 0: let the runtime decide
    remote: RemoteTarget | None = None    # a model on a server the user added: no weights are loaded


@dataclass(frozen=True, slots=True)
class UnloadModel:
    request_id: int


@dataclass(frozen=True, slots=True)
class StartChat:
    request_id: int
    conversation_id: str
    messages: tuple[Message, ...]     # the whole thread up to the reply, an immutable snapshot
    params: GenerationParams


@dataclass(frozen=True, slots=True)
class Shutdown:
    request_id: int = 0


Request = Union[LoadModel, UnloadModel, StartChat, Shutdown]

# ---------------------------------------------------------------- worker -> GUI


@dataclass(frozen=True, slots=True)
class LoadProgress:
    request_id: int
    fraction: float                   # 0..1
    stage: str


@dataclass(frozen=True, slots=True)
class ModelReady:
    request_id: int
    info: ModelInfo


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    request_id: int


@dataclass(frozen=True, slots=True)
class ChatStarted:
    """The worker took the StartChat off the queue (a stop pressed before this is re-sent)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """Reply text on one channel, coalesced to at most one event per ~30 ms per channel."""

    request_id: int
    channel: str                      # "analysis" | "commentary" | "final"
    text: str
    recipient: str | None = None      # set on a tool call's arguments (e.g. "functions.get_weather")


@dataclass(frozen=True, slots=True)
class ChatFinished:
    request_id: int
    reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    error: str | None = None          # user-facing message when reason == "error"
    note: str | None = None           # Finished.note (e.g. the server sent no reasoning)


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """Something went wrong on the worker. kind "user": an EngineError the user can act on;
    kind "bug": anything else (the traceback is in `details` and in the log)."""

    request_id: int | None
    kind: Literal["user", "bug"]
    message: str
    details: str = ""


Event = Union[LoadProgress, ModelReady, ModelUnloaded, ChatStarted, ChatDelta, ChatFinished, WorkerFailed]
