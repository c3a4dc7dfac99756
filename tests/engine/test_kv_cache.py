"""KV cache: incremental logits equal full-forward logits; sliding ring across the window; trim."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

import engine.kv_cache
from engine.errors import ContextFull
from engine.kv_cache import KVCache
from engine.model import Transformer

# The cached path reads exactly the bf16 keys/values the full pass uses; what differs is only how
# matmuls block their sums (fp32 rounding, ~1e-6) and, rarely, one bf16 rounding of an intermediate
# landing the other way (measured up to 0.0023). A wrong position, mask or ring slot moves logits by O(1).
CACHE_TOL = 0.03


def _tokens(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 200_000, (n,), generator=torch.Generator().manual_seed(seed))


def _incremental(model: Transformer, cache: KVCache, tokens: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    out, at = [], 0
    for size in chunks:
        out.append(model(tokens[at:at + size], cache))
        at += size
    while at < tokens.shape[0]:
        out.append(model(tokens[at:at + 1], cache))
        at += 1
    return torch.cat(out)


@pytest.mark.parametrize("name", ["w8-e4k2-l2", "w128-e6k3-l3"])
def test_cached_decode_equals_full_forward(name: str, model_dir_for: Callable[[str], Path]) -> None:
    model = Transformer.from_checkpoint(model_dir_for(name))
    chunks = [100, 3, 27] if name.startswith("w128") else [5, 3, 2]   # prefill chunks ...
    n = sum(chunks) + 20                                               # ... then 20 single-token steps
    tokens = _tokens(n)
    full = model(tokens)
    cache = KVCache(model.config, 160)
    inc = _incremental(model, cache, tokens, chunks)
    assert cache.length == n
    assert (inc - full).abs().max().item() < CACHE_TOL


def test_ring_wraps_many_times(model_dir_for: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny slack the sliding ring (window 8 + 5 slots) wraps 3 times over 48 tokens."""
    monkeypatch.setattr(engine.kv_cache, "SLIDING_RING_SLACK", 5)
    model = Transformer.from_checkpoint(model_dir_for("w8-e4k2-l2"))
    tokens = _tokens(48)
    full = model(tokens)
    cache = KVCache(model.config, 48)
    assert cache.ring_size == 13 and cache.max_chunk == 6
    assert cache.layers[0].k.shape[0] == 13 and cache.layers[1].k.shape[0] == 48
    inc = _incremental(model, cache, tokens, [6, 6, 1, 5, 4, 6, 6])
    assert (inc - full).abs().max().item() < CACHE_TOL
    # a chunk longer than the slack is split by the model, still exact
    cache.reset()
    chunked = model(tokens[:40], cache)
    assert cache.length == 40 and (chunked - full[:40]).abs().max().item() < CACHE_TOL


def test_trim(model_dir_for: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.kv_cache, "SLIDING_RING_SLACK", 5)
    model = Transformer.from_checkpoint(model_dir_for("w8-e4k2-l2"))
    tokens = _tokens(60)
    other = _tokens(60, seed=2)
    full = model(tokens)
    cache = KVCache(model.config, 64)
    _incremental(model, cache, other[:40], [6])                  # 40 tokens of some other text
    assert cache.trim(100) == 40                                 # nothing to drop
    assert cache.trim(35) == 35                                  # back 5 = the slack: exact
    # replace the 5 dropped tokens: the result must equal a fresh pass over other[:35] + tokens[35:45]
    seq = torch.cat((other[:35], tokens[35:45]))
    ref = model(seq)
    got = _incremental(model, cache, tokens[35:45], [4])
    assert (got - ref[35:]).abs().max().item() < CACHE_TOL
    assert cache.trim(20) == 0 and cache.length == 0           # 25 back > slack: the ring lost keys -> reset
    # full-attention-only positions: before the ring wraps any trim is exact
    _incremental(model, cache, tokens[:10], [5])
    assert cache.trim(2) == 2
    got = _incremental(model, cache, tokens[2:12], [3])
    assert (got - full[2:12]).abs().max().item() < CACHE_TOL


def test_context_full_and_sizes(tiny_model_dir: Path) -> None:
    model = Transformer.from_checkpoint(tiny_model_dir)
    cache = KVCache(model.config, 16)
    model(_tokens(10), cache)
    with pytest.raises(ContextFull):
        model(_tokens(7), cache)
    assert cache.length == 10
    cfg = model.config
    per_token = 2 * cfg.num_key_value_heads * cfg.head_dim * 2
    assert cache.nbytes == per_token * 16 * cfg.num_hidden_layers     # ring capped by max_context here
    big = KVCache(cfg, 4096)
    assert big.nbytes == per_token * (4096 + min(4096, cfg.sliding_window + engine.kv_cache.SLIDING_RING_SLACK))
    assert big.nbytes == cfg.kv_cache_bytes(4096)


def test_update_at_positions_with_one_refilled_position_buffer(tiny_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed-shape update (a CUDA graph's): each slot's position is the newest <= pos that maps to it,
    slots never written read as future keys, and the per-step memo follows a position buffer refilled in place."""
    monkeypatch.setattr(engine.kv_cache, "SLIDING_RING_SLACK", 2)
    cfg = Transformer.from_checkpoint(tiny_model_dir).config
    cache = KVCache(cfg, 32)
    ring, full = cache.layers[0], cache.layers[1]
    assert ring.capacity == cfg.sliding_window + 2 and full.capacity == 32
    pos = torch.zeros(1, dtype=torch.long)
    kv = torch.zeros(1, cfg.num_key_value_heads, cfg.head_dim, dtype=torch.bfloat16)
    for p in range(25):
        pos.fill_(p)
        cache.begin_step()
        kv.fill_(p)
        _, _, kp_full = full.update_at(pos, kv, kv)
        k_ring, _, kp_ring = ring.update_at(pos, kv, kv)
        assert kp_full[:p + 1].tolist() == list(range(p + 1)) and (kp_full[p + 1:] > p).all()
        for slot in range(ring.capacity):
            newest = p - (p - slot) % ring.capacity
            assert int(kp_ring[slot]) == (newest if newest >= 0 else p + 1)
            if newest >= 0:
                assert float(k_ring[slot, 0, 0]) == float(torch.tensor(newest, dtype=torch.bfloat16))
