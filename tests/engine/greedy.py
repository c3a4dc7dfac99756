"""Greedy decoding straight on a Transformer and its KV cache (no sampler, no session): the tokens two
backends or two builds of one model must agree on. One copy for the engine tests."""

from __future__ import annotations

import torch

from engine.kv_cache import KVCache
from engine.model import Transformer


def greedy_tokens(model: Transformer, prompt: torch.Tensor, n: int, capacity: int = 64) -> list[int]:
    """`n` tokens after `prompt` ([T] token ids), each the argmax of the last position's logits."""
    cache = KVCache(model.config, capacity, device=model.device)
    logits = model(prompt, cache, last_only=True)
    out: list[int] = []
    for _ in range(n):
        out.append(int(logits[-1].argmax()))
        logits = model(torch.tensor([out[-1]]), cache, last_only=True)
    return out
