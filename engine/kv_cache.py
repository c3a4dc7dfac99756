"""Per-layer key/value cache (post-RoPE keys, bf16).

Full-attention layers keep every position (`max_context` slots, slot = position). Sliding layers keep a
ring of `sliding_window + SLIDING_RING_SLACK` slots (slot = position mod ring): a chunk of up to
SLIDING_RING_SLACK tokens can be appended, and the cache trimmed back up to that far, without losing a
key some query still needs. The model writes a chunk's keys first, then reads the window it needs.
"""

from __future__ import annotations

import logging

import torch

from engine.config import SLIDING_RING_SLACK, ModelConfig
from engine.errors import ContextFull

log = logging.getLogger(__name__)


class LayerCache:
    """K and V of one layer: [capacity, kv_heads, head_dim] each."""

    def __init__(self, capacity: int, ring: bool, cfg: ModelConfig, device: torch.device | str,
                 dtype: torch.dtype) -> None:
        self.capacity = capacity
        self.ring = ring
        shape = (capacity, cfg.num_key_value_heads, cfg.head_dim)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)

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
        self.layers = [
            LayerCache(self.ring_size if config.is_sliding(n) else self.max_context, config.is_sliding(n),
                       config, device, dtype)
            for n in range(config.num_hidden_layers)
        ]
        self.length = 0

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
