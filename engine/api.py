"""The engine API the window (and the terminal chat) uses: load a model, chat in sessions.

    engine = Engine.load(model_dir, device="auto", max_context=8192, progress=None)
    session = engine.new_session()
    for event in engine.chat(session, messages, GenerationParams(...), should_stop=lambda: False):
        ...   # PrefillProgress per prefill chunk, then Delta(channel, text, recipient) and DecodeProgress
        ...   # per token, then exactly one Finished(reason, usage, error, error_kind)

Errors (all `EngineError` subclasses, messages fit to show a user):
* `Engine.load` raises ModelFilesError / ConfigError (bad folder), DeviceError, OutOfMemory.
* `Engine.chat` raises ContextFull *when called* (before any event is produced) if the prompt plus
  room for a reply does not fit in `max_context`. Once iteration starts it never raises: running
  out of memory or any other failure ends the stream with Finished(reason="error", error=message,
  error_kind=...): "out_of_memory", "model_files", ... for what the user can act on, "bug" otherwise.
* Progress (engine.types): a `PrefillProgress(done, total, elapsed_s, reused)` after every prefill
  chunk (`prefill_chunk` tokens, 256 by default) of the part of the prompt not served from the cache,
  and a `DecodeProgress(tokens, elapsed_s)` after every sampled token.
* Finished.reason: "stop" (the model ended its turn), "tool_call" (it stopped on <|call|>; Lantern
  runs no tools), "length" (max_tokens or the context limit reached), "cancelled" (should_stop()
  returned True; checked between prefill chunks and between tokens), "error".

A `Session` keeps one conversation's KV cache and the token ids in it. Only one session holds
the (max_context-sized) cache at a time: chatting in another session takes it over, and the first
one re-prefills its conversation when it is used again. Each `chat` call renders the
whole conversation, keeps the longest common prefix of what the cache holds (a new turn, a
regenerate and an edit of a late message all reuse the earlier part) and prefills only the rest;
`Usage.reused_tokens` says how many prompt tokens came from the cache.

This module imports torch; `engine` and `engine.types` do not (they import it lazily).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.config import CheckpointLocation, ModelConfig, load_config
from engine.errors import ContextFull, EngineError, OutOfMemory, error_kind
from engine.harmony import StreamParser, render_conversation, stop_tokens
from engine.tokenizer import Tokenizer, load_tokenizer
from engine.types import (
    ChatEvent,
    DecodeProgress,
    Finished,
    GenerationParams,
    Message,
    ModelInfo,
    PrefillProgress,
    Usage,
)

if TYPE_CHECKING:  # pragma: no cover
    from engine.generate import GenerationResult

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]   # (what is happening, fraction done 0..1)

# A prompt must leave room for at least this many reply tokens (or max_tokens, if smaller).
MIN_REPLY_TOKENS = 64


def _available_bytes(device: str) -> int | None:
    try:
        if device.startswith("cuda") and torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return int(free)
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - best effort, only for the message
        return None


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def _out_of_memory(what: str, device: str, needed: int | None, exc: BaseException) -> OutOfMemory:
    available = _available_bytes(device)
    msg = (f"Not enough memory to {what} on {device} (needs about {_gib(needed)}, "
           f"{_gib(available)} free). Close other programs, choose a smaller context length or a smaller model.")
    log.warning("%s (%s)", msg, exc)
    return OutOfMemory(msg, needed_bytes=needed, available_bytes=available)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def model_display_name(repo_root: Path) -> str:
    """The folder's name, or "openai/gpt-oss-20b" for a Hugging Face cache snapshot folder."""
    if repo_root.parent.name == "snapshots" and repo_root.parent.parent.name.startswith("models--"):
        return repo_root.parent.parent.name[len("models--"):].replace("--", "/")
    return repo_root.name


def _bytes_on_disk(location: CheckpointLocation) -> int:
    return sum(p.stat().st_size for p in location.weights_dir.glob("*.safetensors"))


class Session:
    """One conversation's KV cache and the token ids it holds (made by `Engine.new_session`)."""

    def __init__(self, engine: "Engine", own_cache: bool = False) -> None:
        self._engine = weakref.ref(engine)
        self._own_cache = own_cache   # keeps a KV cache of its own (never handed over; see new_session)
        self._cache = None            # engine.kv_cache.KVCache, allocated on first use
        self._tokens: list[int] = []  # == the tokens in the cache (len == cache.length), unless _live
        self._live: tuple[list[int], list[int]] | None = None   # (prompt, generated) of a stream in flight

    def _current_tokens(self) -> list[int]:
        if self._live is None:
            return self._tokens
        prompt, generated = self._live
        return (prompt + generated)[:self._cache.length] if self._cache is not None else []

    def _sync(self) -> None:
        """Fix `_tokens` from the stream in flight (the cache holds its prompt, then its sampled tokens)."""
        self._tokens = self._current_tokens()
        self._live = None

    @property
    def tokens(self) -> tuple[int, ...]:
        """The token ids the KV cache holds for this conversation."""
        return tuple(self._current_tokens())

    @property
    def cache_bytes(self) -> int:
        return 0 if self._cache is None else int(self._cache.nbytes)

    def reset(self) -> None:
        """Forget the cached tokens (keeps the memory for reuse)."""
        self._tokens = []
        self._live = None
        if self._cache is not None:
            self._cache.reset()

    def close(self) -> None:
        """Free the KV cache memory."""
        self._tokens = []
        self._live = None
        self._cache = None


class Engine:
    """A loaded gpt-oss model with its tokenizer, on one device."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, config: ModelConfig, info: ModelInfo) -> None:
        self._model = model
        self.tokenizer = tokenizer
        self.config = config
        self._info = info
        self._stop_ids = stop_tokens(tokenizer)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._cache_owner: weakref.ref[Session] | None = None
        self._run = 0   # id of the latest chat stream; an older one stops and touches nothing

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: Path | str, *, device: str = "auto", max_context: int = 8192,
             progress: ProgressCallback | None = None) -> "Engine":
        """Load a checkpoint folder (Hugging Face root or `original/`) onto `device`.

        `max_context` is clipped to the model's own limit (131072). `progress(message, fraction)`
        is called a few times on the loading thread.
        """
        from engine.backends import select_device
        from engine.model import Transformer

        def report(message: str, fraction: float) -> None:
            if progress is not None:
                progress(message, fraction)

        report("Reading the model's configuration", 0.0)
        config, location = load_config(model_dir)
        if max_context <= 0:
            raise EngineError(f"The context length must be positive (got {max_context}).")
        max_context = min(int(max_context), config.max_context)
        choice = select_device(device)
        report("Loading the tokenizer", 0.05)
        tokenizer = load_tokenizer(location.repo_root)
        report(f"Loading weights onto {choice.device}", 0.1)
        needed = config.memory_needed_bytes(max_context)
        if choice.device.startswith("cuda"):
            from engine.fit import enough_free   # the one place that decides "will it fit"

            free = _available_bytes(choice.device)
            if free is not None and not enough_free(needed, free):
                raise _out_of_memory(f"load the model with a {max_context:,}-token context", choice.device, needed,
                                     MemoryError("checked before loading"))
        try:
            model = Transformer.from_checkpoint(model_dir, device=choice.device)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            raise _out_of_memory("load the model", choice.device, config.weight_bytes(), exc) from exc
        info = ModelInfo(
            name=model_display_name(location.repo_root),
            path=location.repo_root,
            layout=location.layout,
            num_layers=config.num_hidden_layers,
            num_experts=config.num_experts,
            experts_per_token=config.experts_per_token,
            params_total=config.params_total(),
            params_active=config.params_active(),
            bytes_on_disk=_bytes_on_disk(location),
            memory_needed_bytes=needed,
            max_context=max_context,
            device=choice.device,
            backend=choice.backend,
            fallback_reason=choice.fallback_reason,
        )
        report("Ready", 1.0)
        log.info("loaded %s on %s (%s)%s", info.name, info.device, info.backend,
                 f"; {info.fallback_reason}" if info.fallback_reason else "")
        return cls(model, tokenizer, config, info)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    def new_session(self, own_cache: bool = False) -> Session:
        """A new conversation. Sessions share one KV cache (the memory estimate counts one); with
        `own_cache` the session allocates its own (the local API server's pool keeps a few warm)."""
        session = Session(self, own_cache)
        self._sessions.add(session)
        return session

    def close(self) -> None:
        """Release the model and every session's KV cache."""
        for session in list(self._sessions):
            session.close()
        self._model = None  # type: ignore[assignment]
        if self._info.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- chat ------------------------------------------------------------------------------------
    def render(self, messages: Sequence[Message], params: GenerationParams) -> list[int]:
        """The prompt token ids for the next assistant turn (harmony, ending with <|start|>assistant)."""
        return render_conversation(messages, params, self.tokenizer)

    def chat(self, session: Session, messages: Sequence[Message], params: GenerationParams,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[ChatEvent]:
        """Stream the next assistant turn: Delta events, then exactly one Finished.

        Raises ContextFull now (not during iteration) if the prompt does not fit.
        """
        if self._model is None:
            raise EngineError("The model has been unloaded.")
        if session._engine() is not self:
            raise EngineError("This chat session belongs to another loaded model.")
        if params.temperature < 0 or not 0.0 < params.top_p <= 1.0 or params.max_tokens < 1:
            raise EngineError(f"Invalid sampling settings: temperature {params.temperature} (must be >= 0), "
                              f"top_p {params.top_p} (0 < top_p <= 1), max_tokens {params.max_tokens} (>= 1).")
        prompt = self.render(messages, params)
        limit = self._info.max_context
        room = min(max(1, params.max_tokens), MIN_REPLY_TOKENS)
        if len(prompt) + room > limit:
            raise ContextFull(len(prompt) + room, limit)
        return self._chat_events(session, prompt, params, should_stop)

    def _ensure_cache(self, session: Session) -> None:
        """Give `session` the engine's KV cache (one at a time: the memory estimate counts one)."""
        from engine.kv_cache import KVCache

        owner = self._cache_owner() if self._cache_owner is not None else None
        if session._own_cache:
            owner = None              # allocates its own below, and never becomes the shared owner
        if session._cache is None and owner is not None and owner is not session and owner._cache is not None:
            session._cache, owner._cache = owner._cache, None   # hand over the memory; owner re-prefills later
            owner.reset()
            session._cache.reset()
            session._tokens = []
        if session._cache is None:
            device = self._info.device
            try:
                session._cache = KVCache(self.config, self._info.max_context, device)
            except (MemoryError, torch.OutOfMemoryError) as exc:
                raise _out_of_memory("hold the conversation's memory (KV cache)", device,
                                     self.config.kv_cache_bytes(self._info.max_context), exc) from exc
            session._tokens = []
        if not session._own_cache:
            self._cache_owner = weakref.ref(session)

    def _chat_events(self, session: Session, prompt: list[int], params: GenerationParams,
                     should_stop: Callable[[], bool]) -> Iterator[ChatEvent]:
        from engine.generate import generate

        generated: list[int] = []
        reused = 0
        parser = StreamParser(self.tokenizer)
        result = None
        self._run += 1
        run = self._run

        def superseded() -> bool:
            """A newer chat stream has started (the caller abandoned this one): it owns the cache now."""
            return self._run != run

        try:
            session._sync()   # an abandoned stream may have fed tokens since it last synced
            self._ensure_cache(session)
            cache = session._cache
            assert cache is not None
            assert cache.length == len(session._tokens)
            # keep the common prefix, but always feed at least one token to get the next logits
            target = min(common_prefix_len(session._tokens, prompt), len(prompt) - 1)
            reused = cache.trim(target)
            session._tokens = prompt[:reused]
            session._live = (prompt, generated)
            max_new = max(1, min(params.max_tokens, self._info.max_context - len(prompt)))
            gen = generate(
                self._model, cache, prompt[reused:],
                max_new_tokens=max_new,
                sampler=self._sampler(params),
                stop_tokens=self._stop_ids,
                should_stop=lambda: superseded() or should_stop(),
            )
            try:
                for step in gen.prefill():
                    yield PrefillProgress(step.done, step.total, step.elapsed_s, reused)
                decode_start: float | None = None
                for token in gen:
                    now = time.perf_counter()
                    decode_start = now if decode_start is None else decode_start
                    generated.append(token)
                    yield from parser.feed(token)
                    yield DecodeProgress(len(generated), now - decode_start)
            finally:
                if not superseded():
                    session._sync()
            yield from parser.finish()
            result = gen.result
        except EngineError as exc:
            yield from parser.finish()
            if not superseded():
                session.reset()
            yield Finished("error", self._usage(prompt, reused, generated, None), str(exc), error_kind(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the stream must end with exactly one Finished
            yield from parser.finish()
            if not superseded():
                session.reset()
            if _is_oom(exc):
                err = _out_of_memory("continue this reply", self._info.device,
                                     self.config.kv_cache_bytes(self._info.max_context), exc)
                yield Finished("error", self._usage(prompt, reused, generated, None), str(err), "out_of_memory")
            else:
                log.exception("chat failed")
                yield Finished("error", self._usage(prompt, reused, generated, None),
                               f"Internal error: {type(exc).__name__}: {exc}", "bug")
            return
        reason = result.reason
        if reason == "stop" and result.stop_token == self.tokenizer.special("<|call|>"):
            reason = "tool_call"
        yield Finished(reason, self._usage(prompt, reused, generated, result))

    def _sampler(self, params: GenerationParams):
        from engine.sampling import Sampler

        sampler = Sampler(params.temperature, top_p=params.top_p, seed=params.seed)
        if params.tool_choice == "required" and params.tools:   # the turn must end in a function call
            from engine.structured import constrain_tool_call

            return constrain_tool_call(sampler, self.tokenizer, params)
        if params.response_format is not None:   # structured output: only the final body is constrained
            from engine.structured import constrain_final_channel

            return constrain_final_channel(sampler, self.tokenizer, params.response_format)
        return sampler

    @staticmethod
    def _usage(prompt: list[int], reused: int, generated: list[int], result: "GenerationResult | None") -> Usage:
        if result is None:
            return Usage(prompt_tokens=len(prompt), reused_tokens=reused, completion_tokens=len(generated))
        return Usage(
            prompt_tokens=len(prompt),
            reused_tokens=reused,
            completion_tokens=result.completion_tokens,
            prefill_tokens_per_s=result.prefill_tokens_per_s,
            decode_tokens_per_s=result.decode_tokens_per_s,
            time_to_first_token_s=result.time_to_first_token_s,
            peak_memory_bytes=result.peak_memory_bytes,
        )


__all__ = ["Engine", "Session", "common_prefix_len", "model_display_name"]
