"""The backend contract: the operations the gpt-oss forward pass needs, and where its weights live.

`engine.model.Transformer` is built with one `Backend` (chosen once, by `engine.backends.select`) and calls
nothing else for its arithmetic. The defaults here are the pure-torch reference operations
(`engine.backends.reference`), which run on any torch device; a backend overrides what it does faster.
Every override keeps the reference's semantics (bf16 inputs and outputs, fp32 statistics, softmaxes and
sums) and may differ only in fp32 summation order: `docs/backends.md` states the contract in full.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

import torch

from engine.backends import reference as ref
from engine.moe import PackedExperts, moe_experts_torch
from engine.stacked import StackedRows

if TYPE_CHECKING:  # pragma: no cover
    from engine.checkpoint import Checkpoint
    from engine.file_rows import FileRows
    from engine.config import ModelConfig
    from engine.kv_cache import KVCache
    from engine.model import Transformer


class Backend:
    """One set of kernels on one device. Subclasses set `name` (the registry name) and override ops."""

    name = "torch"

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device}>"

    # ---- weights: where each tensor of the checkpoint lives ------------------------------------------
    def place(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A checkpoint tensor (an mmap view) on this backend's device, in `dtype` if given.

        Off the CPU the copy goes straight from the file mapping to the device, one tensor at a time: the
        pages are read once and no host copy of the model is ever made."""
        if self.device.type == "cpu":
            return t.to(dtype) if dtype is not None and t.dtype != dtype else t
        out = t.to(self.device)
        return out.to(dtype) if dtype is not None and out.dtype != dtype else out

    def place_rows(self, parts: list[torch.Tensor]) -> torch.Tensor | StackedRows:
        """A matrix stored as row blocks (HF q/k/v_proj): one device tensor (concatenated on the device)."""
        if len(parts) == 1:
            return self.place(parts[0])
        return torch.cat([self.place(p) for p in parts], dim=0)

    def place_experts(self, ex: PackedExperts) -> PackedExperts:
        """One layer's packed experts where this backend's MoE reads them (still MXFP4, never expanded)."""
        return PackedExperts(*(self.place(t) for t in (ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias,
                                                         ex.mlp2_blocks, ex.mlp2_scales, ex.mlp2_bias)))

    def embedding_rows(self, ckpt: Checkpoint, table: torch.Tensor) -> FileRows | None:
        """Where the token-embedding rows are read from the file instead of the placed table (None: the
        table, with F.embedding on the device)."""
        return None

    # ---- the operations ---------------------------------------------------------------------------
    def rms_norm(self, x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
        """x [T, D] bf16, scale [D] f32 -> [T, D] bf16 (fp32 statistics)."""
        return ref.rms_norm(x, scale, eps)

    def linear(self, x: torch.Tensor, weight: torch.Tensor | StackedRows,
               bias: torch.Tensor | StackedRows | None) -> torch.Tensor:
        """x [T, D] bf16 @ weight [N, D].T + bias -> [T, N] bf16 (fp32 sums, one rounding)."""
        return ref.linear(x, weight, bias)

    def logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x [T, D] bf16 @ unembedding [V, D].T -> [T, V] f32 (exact where any decision is taken)."""
        return ref.logits_fp32(x, weight)

    def rope(self, qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate-half RoPE on qk [T, H, d] with cos/sin [T, d/2] (already in qk's dtype)."""
        from engine.rope import apply_rope

        return apply_rope(qk, cos, sin)

    def route(self, h: torch.Tensor, gate_w: torch.Tensor, gate_b: torch.Tensor,
              k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """h [T, D] -> (expert ids [T, k] int64, weights [T, k] f32): top-k router logits, softmax over k.
        On the device: no host read."""
        return ref.route(h, gate_w, gate_b, k, self.linear)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                  q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None, sm_scale: float, *,
                  q_start: int | None = None, k_start: int | None = None) -> torch.Tensor:
        """Causal attention with sinks for several queries (prefill, or a chunk after a cached prefix).

        q [T, Hkv, G, d], k/v [S, Hkv, d] bf16, sinks [H] f32, positions q_pos [T], k_pos [S] (consecutive,
        as `KVCache.update` returns them; q_start / k_start are their first values, known on the host)
        -> [T, H*d] bf16."""
        return ref.attention(q, k, v, sinks, q_pos, k_pos, window, sm_scale)

    def attention_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                         sm_scale: float, *, q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
                         window: int | None = None) -> torch.Tensor:
        """One query (decode). Without positions every key given is visible (`KVCache.update` returned just
        the window). With q_pos [1] / k_pos [S] (device tensors, `KVCache.update_at`: the whole buffer)
        the mask is computed on the device, so the step has fixed shapes and reads nothing on the host."""
        if k_pos is None:
            return ref.attention_one(q, k, v, sinks, sm_scale)
        return ref.attention(q, k, v, sinks, q_pos, k_pos, window, sm_scale, banded=False)

    def moe(self, h: torch.Tensor, expert_idx: torch.Tensor, expert_w: torch.Tensor, experts: PackedExperts,
            swiglu_limit: float) -> torch.Tensor:
        """h [T, D] bf16, ids [T, K], weights [T, K] f32 -> [T, D] bf16 = sum_k w_k expert_k(h), reading the
        packed MXFP4 blocks and scales (never an expanded copy of all experts)."""
        return moe_experts_torch(h, expert_idx, expert_w, experts, swiglu_limit)

    # ---- running ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, n_tokens: int) -> Iterator[None]:
        """Around one forward call of `n_tokens` tokens (the CPU backend uses it for its threads)."""
        yield

    def new_cache(self, config: ModelConfig, max_context: int) -> KVCache:
        """The KV cache layout this backend's attention reads."""
        from engine.kv_cache import KVCache

        return KVCache(config, max_context, device=self.device)

    def decoder(self, model: Transformer, cache: KVCache) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A faster one-token step for this (model, cache) pair (e.g. a captured CUDA graph), or None to
        run the plain forward pass. The callable maps token [1] int64 -> logits [1, V] f32 and advances
        the cache by one position."""
        return None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
