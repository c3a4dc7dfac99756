"""Every type that crosses the worker queue, both ways. Qt-free and torch-free.

GUI -> worker: `Request` (LoadModel, UnloadModel, StartChat, Shutdown), put on a queue.
Worker -> GUI: `Event`, delivered through one Qt signal. Each event carries the `request_id` of
the request it answers, so the GUI can drop events of a turn it has cancelled or replaced.
Cancelling a turn is not a message: it is a `threading.Event` read between tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from app.remote.target import RemoteTarget
from engine.types import Delta, ErrorKind, FinishReason, GenerationParams, Message, ModelInfo, Usage

# ---------------------------------------------------------------- GUI -> worker


@dataclass(frozen=True, slots=True)
class LoadModel:
    request_id: int
    model_dir: Path
    device: str = "auto"              # "auto" | "cpu" | "cuda" | "mps"
    max_context: int = 8192
    cpu_threads: int = 0              # 0: let the runtime decide
    experts_on_cpu: int | None = None # GPU only: layers whose experts run on the CPU; None: chosen from free memory
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
    tools: Any = None                 # engine.tools.chat_tools.ChatToolsRequest: run tool calls (app/tools_controller.py)


@dataclass(frozen=True, slots=True)
class Shutdown:
    request_id: int = 0


Request = Union[LoadModel, UnloadModel, StartChat, Shutdown]

# ---------------------------------------------------------------- worker -> GUI


@dataclass(frozen=True, slots=True)
class LoadProgress:
    request_id: int
    fraction: float                   # 0..1
    stage: str                        # what is happening, e.g. "Loading weights onto cpu"


@dataclass(frozen=True, slots=True)
class LoadFailed:
    """A LoadModel did not end in a loaded model. `model_kept`: the model loaded before is still
    loaded (the new folder was checked and refused before anything was unloaded). kind "cancelled":
    the user cancelled it; "user": an EngineError they can act on; "bug": anything else."""

    request_id: int
    kind: Literal["user", "bug", "cancelled"]
    message: str
    model_kept: bool = False
    details: str = ""


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
    """Reply text on one channel (a ChatUpdate carries them; tests may send one alone)."""

    request_id: int
    channel: str                      # "analysis" | "commentary" | "final"
    text: str
    recipient: str | None = None      # set on a tool call's arguments (e.g. "functions.get_weather")


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Where a reply is, from the engine's progress events: reading the prompt, then writing."""

    phase: Literal["prefill", "decode"]
    prompt_tokens: int                # the whole prompt (reused + new)
    prefill_done: int                 # of the new part, fed so far
    prefill_total: int                # the new part (not served from the cache)
    prefill_elapsed_s: float
    completion_tokens: int = 0
    decode_elapsed_s: float = 0.0

    @property
    def context_tokens(self) -> int:
        """Tokens in the context now."""
        return self.prompt_tokens - self.prefill_total + self.prefill_done + self.completion_tokens

    @property
    def prefill_fraction(self) -> float:
        return self.prefill_done / self.prefill_total if self.prefill_total else 1.0

    @property
    def prefill_seconds_left(self) -> float | None:
        if self.prefill_done <= 0 or self.prefill_elapsed_s <= 0:
            return None
        return self.prefill_elapsed_s / self.prefill_done * max(0, self.prefill_total - self.prefill_done)

    @property
    def tokens_per_s(self) -> float:
        steps = max(0, self.completion_tokens - 1)
        return steps / self.decode_elapsed_s if self.decode_elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ChatUpdate:
    """What a turn did since the last update: text pieces (in order, one per channel change) and the
    latest progress. The worker sends at most one per COALESCE_SECONDS (app/worker.py): the only
    place streaming is coalesced; the window renders each update it gets."""

    request_id: int
    pieces: tuple[Delta, ...] = ()
    stats: LiveStats | None = None


@dataclass(frozen=True, slots=True)
class ChatFinished:
    request_id: int
    reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    error: str | None = None          # user-facing message when reason == "error"
    error_kind: ErrorKind | None = None   # "bug" for a failure that is not the user's
    note: str | None = None           # Finished.note (e.g. the server sent no reasoning)

    @property
    def is_bug(self) -> bool:
        return self.reason == "error" and self.error_kind in (None, "bug")


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """Something went wrong on the worker. kind "user": an EngineError the user can act on;
    kind "bug": anything else (the traceback is in `details` and in the log)."""

    request_id: int | None
    kind: Literal["user", "bug"]
    message: str
    details: str = ""


Event = Union[LoadProgress, LoadFailed, ModelReady, ModelUnloaded, ChatStarted, ChatDelta, ChatUpdate, ChatFinished,
              WorkerFailed]
