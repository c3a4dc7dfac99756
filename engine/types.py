"""Torch-free data types shared by the engine, its command line and the app.

Importing this module (or `engine` itself) never imports torch: the window can use these
types before the engine is loaded on the worker thread.

`Engine.chat` yields `ChatEvent`s, in this order:
* `PrefillProgress` after each prefill chunk (the prompt being read: `done` of `total` new tokens,
  after `reused` tokens that came from the session's cache), so a front end can say "Reading your
  message… 43 %" during a long prompt;
* `Delta` pieces of reply text and `DecodeProgress` after each sampled token (tokens so far and the
  seconds they took), for live tokens/s and the context meter;
* exactly one `Finished` last; its `error_kind` says whether an error is the user's to act on
  (context full, out of memory, bad model files) or a bug.
A consumer ignores event types it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union

ReasoningEffort = Literal["low", "medium", "high"]
Role = Literal["system", "developer", "user", "assistant", "tool"]
Channel = Literal["analysis", "commentary", "final"]
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_call"]
Layout = Literal["huggingface", "original"]
ErrorKind = Literal["context_full", "out_of_memory", "model_files", "device", "user", "bug"]
"""Why a reply failed: the first five are the user's to act on (an `EngineError`); "bug" is anything else."""

DEFAULT_REASONING_EFFORT: "ReasoningEffort" = "medium"
"""The reasoning effort when none is chosen: the same for the window, the terminal chat and the API."""

BuiltinTool = Literal["browser", "python"]
ToolChoice = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation, as the user and the model see it (text, never token ids).

    `channel` is set on assistant messages: "analysis" (chain of thought), "commentary" or
    "final" (the answer). `recipient` is set on tool calls (e.g. "functions.get_weather").
    `content_type` is the header's content type as the model wrote it ("json", "code",
    "<|constrain|>json"), kept so that a tool call re-renders exactly (docs/harmony-tools.md).
    `tool_name` is the author of a role="tool" message, the tool that produced the result
    (e.g. "functions.get_weather", "browser.search", "python"); see `tool_result`.
    """

    role: Role
    content: str
    channel: Channel | None = None
    recipient: str | None = None
    content_type: str | None = None
    tool_name: str | None = None


def tool_result(tool_name: str, content: str, channel: Channel | None = "commentary") -> Message:
    """A tool's result for the model: rendered `<|start|>{tool_name} to=assistant<|channel|>{channel}...`.

    Function results go on "commentary"; a built-in tool answers on the channel of its call
    (usually "analysis").
    """
    return Message(role="tool", content=content, channel=channel, recipient="assistant", tool_name=tool_name)


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A developer-defined function the model may call (rendered into harmony's `functions` namespace).

    `name` is the caller's name; harmony.function_names() gives the name the model sees (sanitised
    to an identifier when needed). `parameters` is a JSON Schema (usually an object schema), or
    None for a function that takes no arguments.
    """

    name: str
    description: str = ""
    parameters: Any = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: the final answer must be JSON matching `schema` (JSON Schema, a dict).

    Rendered as the developer message's `# Response Formats` section; only the `final` channel's
    body is constrained while sampling (docs/harmony-tools.md).
    """

    name: str
    schema: Any
    description: str | None = None
    strict: bool = True


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """How to sample one reply. Defaults follow the gpt-oss README (temperature 1.0, top_p 1.0)."""

    temperature: float = 1.0          # 0 means greedy (argmax)
    top_p: float = 1.0
    max_tokens: int = 4096            # reply tokens, reasoning included
    reasoning_effort: ReasoningEffort = DEFAULT_REASONING_EFFORT
    seed: int | None = None
    current_date: str | None = None   # "YYYY-MM-DD" for the system message; None leaves it out
    # Tools (docs/harmony-tools.md). Built-ins go in the system message, functions in the developer one.
    builtin_tools: tuple[BuiltinTool, ...] = ()
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = "auto"       # "none": functions are not rendered at all
    allowed_tools: tuple[str, ...] | None = None   # with "required": the (caller's) names it may call
    response_format: ResponseFormat | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of streamed reply text on one channel.

    `recipient` is set when the text is a tool call's arguments (a commentary message addressed
    to a tool, e.g. "functions.get_weather"): that text is not part of the answer.
    """

    channel: Channel
    text: str
    recipient: str | None = None
    content_type: str | None = None   # the message header's content type, e.g. "<|constrain|>json", "code"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0            # tokens of the rendered conversation
    reused_tokens: int = 0            # of those, served from the session's KV cache
    completion_tokens: int = 0
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    time_to_first_token_s: float = 0.0
    peak_memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PrefillProgress:
    """The prompt is being read: `done` of `total` tokens fed so far, `elapsed_s` seconds since the
    prefill began. `reused` prompt tokens before them came from the session's KV cache (the whole
    prompt is `reused + total` tokens). Sent after each prefill chunk."""

    done: int
    total: int
    elapsed_s: float
    reused: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def seconds_left(self) -> float | None:
        """A linear estimate from the speed so far (None before the first chunk is timed)."""
        if self.done <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s / self.done * max(0, self.total - self.done)


@dataclass(frozen=True, slots=True)
class DecodeProgress:
    """`tokens` reply tokens sampled so far, the first `elapsed_s` seconds after the prefill ended
    (the first token comes from the prefill). Sent after each sampled token."""

    tokens: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        steps = max(0, self.tokens - 1)
        return steps / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every reply: exactly one per `Engine.chat` call."""

    reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    error: str | None = None          # user-facing message when reason == "error"
    error_kind: ErrorKind | None = None   # set when reason == "error"
    note: str | None = None           # a remark to show with the reply (e.g. a server sent no reasoning)

    @property
    def is_bug(self) -> bool:
        """The reply failed for a reason that is not the user's (shown as a bug, with the log)."""
        return self.reason == "error" and self.error_kind in (None, "bug")


ChatEvent = Union[PrefillProgress, Delta, DecodeProgress, Finished]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a loaded (or inspected) model is and where it runs."""

    name: str
    path: Path
    layout: Layout
    num_layers: int
    num_experts: int
    experts_per_token: int
    params_total: int
    params_active: int
    bytes_on_disk: int
    memory_needed_bytes: int          # weights resident + KV cache at max_context
    max_context: int
    device: str = "cpu"               # "cpu" | "cuda" | "mps" (empty when only inspected)
    backend: str = ""                 # backend name (engine.backends registry), e.g. "cpu-avx2", "cuda-triton"
    fallback_reason: str | None = None  # why the requested device/backend (or a present GPU) was not used
    backend_note: str | None = None   # why the device's best kernels are not in use, if not (not a fallback)
    cpu_expert_layers: int = 0        # layers whose experts run on the CPU next to a too-small GPU
    remote_host: str | None = None    # set when a server the user added runs the model ("gpu-box:8000")

    @property
    def backend_label(self) -> str:
        """Short text for the window's status bar, e.g. "CPU · AVX2" (see `backend_label`)."""
        return backend_label(self)


_DEVICE_LABELS = {"cpu": "CPU", "cuda": "CUDA", "mps": "Apple GPU"}
_BACKEND_LABELS = {
    "cpu-avx512": "AVX-512", "cpu-avx2": "AVX2", "cpu-neon": "NEON", "cpu-scalar": "scalar",
    "cpu-reference": "pure torch", "cuda-triton": "Triton", "cuda-torch": "pure torch", "mps": "Metal",
}


def backend_label(info: ModelInfo) -> str:
    """The one place that turns a backend choice into the status bar's words (torch-free).

    "CPU · AVX2", "CUDA · Triton", "CPU · pure torch", "CUDA · Triton · experts of 14 of 36 layers on the
    CPU"; "(fell back: reason)" is added only when a GPU or backend was asked for, or a GPU is present,
    and could not be used (a machine without a GPU running on its CPU is not a fallback).
    """
    device = info.device.split(":", 1)[0]
    text = f"{_DEVICE_LABELS.get(device, device.upper() or '?')} · {_BACKEND_LABELS.get(info.backend, info.backend or 'default')}"
    if info.backend == "cuda-triton" and device == "cpu":
        text += " (interpreter)"
    if info.cpu_expert_layers:
        text += f" · {experts_split_text(info.cpu_expert_layers, info.num_layers)}"
    if info.fallback_reason:
        text += f" (fell back: {info.fallback_reason})"
    return text


def experts_split_text(cpu_layers: int, num_layers: int) -> str:
    """"experts of 14 of 36 layers on the CPU" (or "all experts on the GPU")."""
    if cpu_layers <= 0:
        return "all experts on the GPU"
    return f"experts of {cpu_layers} of {num_layers} layers on the CPU"


class ChatEngine(Protocol):
    """What a front end (the window's worker, the terminal chat) needs from `engine.api.Engine`.

    A protocol, so tests can pass a scripted fake; `Engine` satisfies it.
    """

    @property
    def info(self) -> ModelInfo: ...

    def new_session(self) -> Any: ...

    def chat(self, session: Any, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = ...) -> Iterator[ChatEvent]: ...
