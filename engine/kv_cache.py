"""Per-layer key/value cache (post-RoPE keys, bf16).

Full-attention layers keep every position (`max_context` slots, slot = position). Sliding layers keep a
ring of `sliding_window + SLIDING_RING_SLACK` slots (slot = position mod ring): a chunk of up to
SLIDING_RING_SLACK tokens can be appended, and the cache trimmed back up to that far, without losing a
key some query still needs.

The cache owns its window arithmetic: `LayerCache.update(start, k, v)` stores a chunk's keys and values
and returns exactly the keys its queries may see, with their absolute positions (as mlx-lm's rotating
cache does). `update_at(pos, k, v)` is the same for one token whose position is a device tensor: it
returns the whole buffer with each slot's position, so a decode step has fixed shapes and never reads the
device from the host (what a captured CUDA graph needs).
"""

from __future__ import annotations

import logging

import torch

from engine.config import SLIDING_RING_SLACK, ModelConfig
from engine.errors import ContextFull

log = logging.getLogger(__name__)


class LayerCache:
    """K and V of one layer: [capacity, kv_heads, head_dim] each; `window` keys per query (None: all)."""

    def __init__(self, capacity: int, ring: bool, cfg: ModelConfig, device: torch.device | str,
                 dtype: torch.dtype, window: int | None = None, step_memo: dict | None = None) -> None:
        self.capacity = capacity
        self._memo = step_memo if step_memo is not None else {}   # shared by the layers of one cache
        self.ring = ring
        self.window = window
        self.device = torch.device(device)
        shape = (capacity, cfg.num_key_value_heads, cfg.head_dim)
        # zeros, not empty: a fixed-shape step reads whole buffers (masked keys weigh 0, and 0 * NaN is NaN)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self._slots = torch.arange(capacity, device=device)                  # [C] int64, for update_at

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store k, v [T, kv_heads, head_dim] at positions start..start+T-1; return the keys, values and
        positions [S] (consecutive) that those T queries can see: from the oldest key the first query's
        window reaches (0 on full layers) up to the last new one."""
        t = k.shape[0]
        self.write(start, k, v)
        begin = 0 if self.window is None else max(0, start - self.window + 1)
        keys, values = self.read(begin, start + t)
        return keys, values, torch.arange(begin, start + t, device=self.device)

    def update_at(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
        """One token at position `pos` ([1] int64 on the cache's device): store k, v [1, kv_heads, head_dim]
        in slot pos % capacity; return the whole K and V buffers [C, kv_heads, head_dim] and each slot's
        position [C] (the newest position <= pos that maps to it; > pos for a slot never written, so every
        mask hides it). No host reads: fixed shapes whatever `pos` holds."""
        memo = self._memo.get(self.capacity)
        if memo is None or memo[0] is not pos:          # once per step and capacity (layers share them)
            behind = (pos - self._slots) % self.capacity                     # [C] 0..C-1: slot is `behind` back
            positions = pos - behind                                         # [C]
            positions = torch.where(positions >= 0, positions, pos + 1)      # never written: a future key
            memo = (pos, pos % self.capacity, positions)
            self._memo[self.capacity] = memo
        _, slot, positions = memo                                            # slot [1], positions [C]
        self.k.index_copy_(0, slot, k)
        self.v.index_copy_(0, slot, v)
        return self.k, self.v, positions

    def write(self, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [T, kv_heads, head_dim] for positions start..start+T-1."""
        t = k.shape[0]
        assert t <= self.capacity
        if not self.ring:
            self.k[start:start + t] = k
            self.v[start:start + t] = v
            return
        s = start % self.capacity
        first = min(t, self.capacity - s)
        self.k[s:s + first] = k[:first]
        self.v[s:s + first] = v[:first]
        if first < t:
            self.k[:t - first] = k[first:]
            self.v[:t - first] = v[first:]

    def read(self, begin: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V for positions begin..end-1 (in order): [end-begin, kv_heads, head_dim]."""
        if not self.ring:
            return self.k[begin:end], self.v[begin:end]
        assert end - begin <= self.capacity
        s, e = begin % self.capacity, (end - 1) % self.capacity + 1
        if s < e:
            return self.k[s:e], self.v[s:e]
        return torch.cat((self.k[s:], self.k[:e])), torch.cat((self.v[s:], self.v[:e]))


class KVCache:
    """The KV cache of one conversation; `length` tokens have gone through the model."""

    def __init__(self, config: ModelConfig, max_context: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.bfloat16) -> None:
        if max_context <= 0:
            raise ValueError("max_context must be positive")
        self.config = config
        self.max_context = int(max_context)
        self.window = config.sliding_window
        self.ring_size = min(self.max_context, config.sliding_window + SLIDING_RING_SLACK)
        self.device = torch.device(device)
        self._step_memo: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.layers = [
            LayerCache(self.ring_size if config.is_sliding(n) else self.max_context, config.is_sliding(n),
                       config, device, dtype, config.sliding_window if config.is_sliding(n) else None,
                       self._step_memo)
            for n in range(config.num_hidden_layers)
        ]
        self.length = 0
        self.decoders: dict[int, object] = {}   # per-model fast decode steps bound to these buffers (backends)

    def begin_step(self) -> None:
        """Start a fixed-shape step: slot positions computed by `update_at` are shared by the layers of one
        step only (the position tensor may be the same buffer, refilled, next step)."""
        self._step_memo.clear()

    @property
    def nbytes(self) -> int:
        return sum(layer.k.nbytes + layer.v.nbytes for layer in self.layers)

    @property
    def max_chunk(self) -> int:
        """Most tokens one forward call may append (sliding rings must keep the window of the first one)."""
        return max(1, self.ring_size - self.window + 1)

    def check_room(self, n: int) -> None:
        if self.length + n > self.max_context:
            raise ContextFull(self.length + n, self.max_context)

    def reset(self) -> None:
        self.length = 0

    def trim(self, n: int) -> int:
        """Keep the first n tokens; return how many are really kept (0 = had to reset)."""
        n = max(0, min(int(n), self.length))
        oldest_in_ring = self.length - self.ring_size       # positions below this were overwritten
        needed_from = max(0, n - self.window + 1)           # oldest key the next token will need
        if n > 0 and needed_from < oldest_in_ring:
            log.debug("KV trim to %d is past the sliding ring; resetting", n)
            self.length = 0
            return 0
        self.length = n
        return n
