"""Token generation against a KV cache: chunked prefill, then one token at a time.

`Generation.prefill()` runs the prefill chunk by chunk and yields a `PrefillStep` after each (so
`Engine.chat` can report progress on a long prompt); iterating the Generation then decodes. Iterating
without calling `prefill()` first runs the prefill inside the first `next()`, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from engine.kv_cache import KVCache
from engine.model import Transformer
from engine.sampling import Sampler

StopReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True, slots=True)
class PrefillStep:
    """After one prefill chunk: `done` of `total` tokens fed, `elapsed_s` since the prefill began."""

    done: int
    total: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class GenerationResult:
    reason: StopReason
    stop_token: int | None
    prompt_tokens: int              # tokens fed by prefill (those appended after what the cache held)
    completion_tokens: int          # sampled tokens, the stop token included
    prefill_seconds: float
    decode_seconds: float
    time_to_first_token_s: float
    peak_memory_bytes: int

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        # the first token comes from the prefill logits; the rest each cost one decode step
        steps = max(0, self.completion_tokens - 1)
        return steps / self.decode_seconds if self.decode_seconds > 0 else 0.0


def peak_memory_bytes(device: torch.device) -> int:
    """Peak device memory (CUDA/MPS) or this process's peak resident set size (CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        try:
            return int(torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return 0
    try:
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    except (ImportError, OSError):
        return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Generation:
    """Iterator of sampled token ids; `result` is set once it is exhausted."""

    def __init__(self, model: Transformer, cache: KVCache, tokens: Iterable[int], *, max_new_tokens: int,
                 sampler: Sampler, stop_tokens: Iterable[int], should_stop: Callable[[], bool],
                 prefill_chunk: int) -> None:
        self.model = model
        self.cache = cache
        self.tokens = [int(t) for t in tokens]
        self.max_new_tokens = int(max_new_tokens)
        self.sampler = sampler
        self.stop_tokens = frozenset(int(t) for t in stop_tokens)
        self.should_stop = should_stop
        self.prefill_chunk = max(1, min(int(prefill_chunk), cache.max_chunk))
        if not self.tokens:
            raise ValueError("generate() needs at least one token to append")
        cache.check_room(len(self.tokens))                 # ContextFull before anything runs
        self.result: GenerationResult | None = None
        self._logits: torch.Tensor | None = None      # [V] f32 of the last prompt position, once fed
        self._fed = 0                                  # prompt tokens fed so far
        self._t0: float | None = None                  # when the prefill began
        self._prefill_cancelled = False
        self._it = self._run()

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        return next(self._it)

    def prefill(self) -> Iterator[PrefillStep]:
        """Feed the prompt in chunks of `prefill_chunk` tokens, yielding progress after each.

        Stops early (and the generation then ends "cancelled") when `should_stop()` turns true
        between chunks. Calling it again, or iterating afterwards, does not feed anything twice.
        """
        model, cache, device = self.model, self.cache, self.model.device
        if self._t0 is None:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            self._t0 = time.perf_counter()
        ids = torch.tensor(self.tokens, dtype=torch.long, device=device)
        total = len(self.tokens)
        # only the last chunk's last position needs logits
        while self._fed < total and not self._prefill_cancelled:
            if self.should_stop():
                self._prefill_cancelled = True
                return
            chunk = ids[self._fed:self._fed + self.prefill_chunk]
            self._logits = model(chunk, cache, last_only=True)[-1]      # [V] f32
            self._fed += chunk.shape[0]
            yield PrefillStep(self._fed, total, time.perf_counter() - self._t0)

    def _run(self) -> Iterator[int]:
        model, cache, device = self.model, self.cache, self.model.device
        produced = 0
        reason: StopReason = "length"
        stop_token: int | None = None
        prefill_s = decode_s = ttft = 0.0

        def finish() -> None:
            self.result = GenerationResult(reason, stop_token, self._fed, produced, prefill_s, decode_s, ttft,
                                           peak_memory_bytes(device))

        # ---- prefill (unless the caller already ran it through prefill()) ----
        for _ in self.prefill():
            pass
        assert self._t0 is not None
        if self._prefill_cancelled:
            reason = "cancelled"
            prefill_s = time.perf_counter() - self._t0
            finish()
            return
        logits = self._logits
        if self.max_new_tokens <= 0:
            prefill_s = time.perf_counter() - self._t0
            finish()
            return
        token = self.sampler(logits)                                   # syncs the device
        prefill_s = ttft = time.perf_counter() - self._t0

        # ---- decode ----
        t1 = time.perf_counter()
        step = torch.empty(1, dtype=torch.long, device=device)
        while True:
            produced += 1
            yield token
            if token in self.stop_tokens:
                reason, stop_token = "stop", token
                break
            if produced >= self.max_new_tokens:
                reason = "length"
                break
            if self.should_stop():
                reason = "cancelled"
                break
            if cache.length >= cache.max_context:
                reason = "length"
                break
            step.fill_(token)
            token = self.sampler(model(step, cache)[-1])
        decode_s = time.perf_counter() - t1
        finish()


def generate(model: Transformer, cache: KVCache, tokens: Iterable[int], *, max_new_tokens: int, sampler: Sampler,
             stop_tokens: Iterable[int], should_stop: Callable[[], bool] = lambda: False,
             prefill_chunk: int = 256) -> Generation:
    """Append `tokens` after what the cache holds, then sample up to `max_new_tokens` tokens.

    The stop token, if one is sampled, is yielded last. The last sampled token is not fed through the
    model, so `cache.length` is the number of tokens that went through it (prompt + all but the last).
    """
    return Generation(model, cache, tokens, max_new_tokens=max_new_tokens, sampler=sampler,
                      stop_tokens=stop_tokens, should_stop=should_stop, prefill_chunk=prefill_chunk)
