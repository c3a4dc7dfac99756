"""The gpt-oss transformer (spec §1.2), running on weights straight from a memory-mapped checkpoint.

Precision: bf16 weights and activations; fp32 for RMSNorm statistics, attention scores and softmax
(sinks included), the router softmax, expert accumulation (engine.moe) and the final logits.
Dense matmuls (qkv, out, router) are bf16 x bf16 -> bf16 like the reference implementation; their inputs
and outputs are what the reference sees, so expert selection agrees with it wherever the inputs do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.backends.reference import attention, attention_one, linear, logits_fp32, rms_norm  # noqa: F401
from engine.checkpoint import Checkpoint, open_checkpoint
from engine.config import ModelConfig
from engine.file_rows import FileRows
from engine.kv_cache import KVCache
from engine.moe import PackedExperts
from engine.rope import Rope
from engine.stacked import StackedRows

if TYPE_CHECKING:  # pragma: no cover
    from engine.backends.base import Backend

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Layer:
    attn_norm: torch.Tensor     # [D] f32
    qkv_w: torch.Tensor | StackedRows   # [Q+2K, D] bf16 (CPU, HF layout: q/k/v_proj kept apart, uncopied)
    qkv_b: torch.Tensor | StackedRows   # [Q+2K] bf16
    sinks: torch.Tensor         # [H] f32
    out_w: torch.Tensor         # [D, Q] bf16
    out_b: torch.Tensor         # [D] bf16
    mlp_norm: torch.Tensor      # [D] f32
    gate_w: torch.Tensor        # [E, D] bf16
    gate_b: torch.Tensor        # [E] bf16
    experts: PackedExperts
    window: int | None          # sliding window (tokens incl. self) or None for full attention
    expert_backend: Backend | None = None  # runs this layer's experts when not the model's (experts on the CPU)


class Transformer(torch.nn.Module):
    """gpt-oss forward pass on one backend; weights are plain tensors (mmap views on CPU)."""

    def __init__(self, config: ModelConfig, backend: Backend, embedding: torch.Tensor, layers: list[Layer],
                 norm: torch.Tensor, unembedding: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        self.backend = backend
        self.embedding = embedding          # [V, D] bf16
        self.layers = layers
        self.norm = norm                    # [D] f32
        self.unembedding = unembedding      # [V, D] bf16
        self.device = backend.device
        self.rope = Rope(config, self.device)
        self.sm_scale = 1.0 / math.sqrt(config.head_dim)
        self.checkpoint: Checkpoint | None = None
        self.embedding_rows: FileRows | None = None  # CPU: embedding rows read from the file (not mapped)

    @property
    def cpu_expert_layers(self) -> tuple[int, ...]:
        """Layers whose experts run on another backend than the model's (the CPU, next to a small GPU)."""
        return tuple(n for n, layer in enumerate(self.layers) if layer.expert_backend is not None)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, model_dir: Path | str | Checkpoint, device: str | torch.device = "cpu", *,
                        backend: Backend | None = None, cpu_expert_layers: Sequence[int] = (),
                        cpu_backend: Backend | None = None) -> "Transformer":
        """Build the model on `backend` (default: the one `engine.backends.select(device)` picks).

        Tensors go from the file mapping to the backend's device one at a time (no host copy of the model).
        The experts of `cpu_expert_layers` stay in the file mapping and run on `cpu_backend` (default: the
        best CPU backend); everything else of those layers stays on the model's device.
        """
        from engine.backends import select

        ckpt = model_dir if isinstance(model_dir, Checkpoint) else open_checkpoint(model_dir)
        cfg = ckpt.config
        be = backend if backend is not None else select(str(device)).backend
        offload = sorted({int(n) for n in cpu_expert_layers})
        if any(not 0 <= n < cfg.num_hidden_layers for n in offload):
            raise ValueError(f"cpu_expert_layers {offload} outside 0..{cfg.num_hidden_layers - 1}")
        if offload and cpu_backend is None:
            cpu_backend = select("cpu").backend

        def get(name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
            return be.place(ckpt.get(name), dtype)

        layers = []
        for n in range(cfg.num_hidden_layers):
            p = f"block.{n}."
            packed = PackedExperts(*(ckpt.get(p + name) for name in (
                "mlp.mlp1_weight.blocks", "mlp.mlp1_weight.scales", "mlp.mlp1_bias",
                "mlp.mlp2_weight.blocks", "mlp.mlp2_weight.scales", "mlp.mlp2_bias")))
            expert_be = cpu_backend if n in offload else None
            layers.append(Layer(
                attn_norm=get(p + "attn.norm.scale", torch.float32),
                qkv_w=be.place_rows(ckpt.get_parts(p + "attn.qkv.weight")),
                qkv_b=be.place_rows(ckpt.get_parts(p + "attn.qkv.bias")),
                sinks=get(p + "attn.sinks", torch.float32),
                out_w=get(p + "attn.out.weight"), out_b=get(p + "attn.out.bias"),
                mlp_norm=get(p + "mlp.norm.scale", torch.float32),
                gate_w=get(p + "mlp.gate.weight"), gate_b=get(p + "mlp.gate.bias"),
                experts=(expert_be or be).place_experts(packed),
                window=cfg.sliding_window if cfg.is_sliding(n) else None,
                expert_backend=expert_be,
            ))
        embedding = get("embedding.weight")
        model = cls(cfg, be, embedding, layers, get("norm.scale", torch.float32), get("unembedding.weight"))
        model.checkpoint = ckpt
        model.embedding_rows = be.embedding_rows(ckpt, embedding)
        return model

    # ---- forward -----------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, *, last_only: bool = False) -> torch.Tensor:
        """tokens [T] int64 -> logits [T, vocab] f32 (or [1, vocab] with last_only).

        Without a cache: one pass over the sequence at positions 0..T-1. With a cache: positions continue
        after `cache.length`, keys/values are stored, `cache.length` grows by T. A one-token step runs the
        backend's decoder for this cache when it has one (a captured CUDA graph).
        """
        tokens = tokens.to(self.device).reshape(-1)
        t = tokens.shape[0]
        if cache is not None:
            cache.check_room(t)
            if t == 1:
                decoder = self._decoder(cache)
                if decoder is not None:
                    return decoder(tokens)
            step = cache.max_chunk
            if t > step:
                parts = [self.forward(tokens[a:a + step], cache, last_only=last_only) for a in range(0, t, step)]
                return parts[-1] if last_only else torch.cat(parts)
        with self.backend.step(t):
            x = self._hidden(tokens, cache)                          # [T, D] bf16
            if last_only:
                x = x[-1:]
            return self._logits(x)

    @torch.inference_mode()
    def decode_at(self, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One token [1] at position `pos` ([1] int64 on the device) -> logits [1, V] f32.

        The fixed-shape step a CUDA graph captures: the cache's `update_at`, device-side masks, no host
        read anywhere; it leaves `cache.length` alone (the caller advances it)."""
        cache.begin_step()
        with self.backend.step(1):
            return self._logits(self._hidden(token, cache, pos))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        be = self.backend
        return be.logits(be.rms_norm(x, self.norm, self.config.rms_norm_eps), self.unembedding)

    def _decoder(self, cache: KVCache) -> Callable[[torch.Tensor], torch.Tensor] | None:
        key = id(self)
        if key not in cache.decoders:
            cache.decoders[key] = self.backend.decoder(self, cache)
        return cache.decoders[key]  # type: ignore[return-value]

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.embedding_rows is not None:
            return self.embedding_rows.lookup(tokens)               # [T, D] bf16
        return torch.nn.functional.embedding(tokens, self.embedding)

    def _moe(self, layer: Layer, h: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        limit = self.config.swiglu_limit
        eb = layer.expert_backend
        if eb is None:
            return self.backend.moe(h, idx, w, layer.experts, limit)
        dev = eb.device
        return eb.moe(h.to(dev), idx.to(dev), w.to(dev), layer.experts, limit).to(self.device)

    def _hidden(self, tokens: torch.Tensor, cache: KVCache | None, pos: torch.Tensor | None = None) -> torch.Tensor:
        cfg, be = self.config, self.backend
        t = tokens.shape[0]
        start = cache.length if cache is not None and pos is None else 0
        positions = pos if pos is not None else torch.arange(start, start + t, device=self.device)  # [T]
        cos, sin = self.rope.cos_sin(positions, torch.bfloat16)                 # [T, d/2]
        x = self._embed(tokens)                                                 # [T, D] bf16
        hkv, g, d = cfg.num_key_value_heads, cfg.num_attention_heads // cfg.num_key_value_heads, cfg.head_dim
        qw, kw = cfg.q_width, cfg.kv_width
        eps = cfg.rms_norm_eps
        for n, layer in enumerate(self.layers):
            # ---- attention ----
            h = be.rms_norm(x, layer.attn_norm, eps)
            qkv = be.linear(h, layer.qkv_w, layer.qkv_b)                         # [T, Q+2K] bf16
            qk = be.rope(qkv[:, :qw + kw].reshape(t, hkv * g + hkv, d), cos, sin)  # [T, H+Hkv, d]
            q = qk[:, :hkv * g].reshape(t, hkv, g, d)                            # [T, Hkv, G, d]
            k = qk[:, hkv * g:]                                                  # [T, Hkv, d]
            v = qkv[:, qw + kw:].reshape(t, hkv, d)                              # [T, Hkv, d]
            if cache is None:
                o = be.attention(q, k, v, layer.sinks, positions, positions, layer.window, self.sm_scale,
                                 q_start=0, k_start=0)
            elif pos is not None:                                                # fixed-shape decode step
                k_buf, v_buf, k_pos = cache.layers[n].update_at(pos, k, v)
                o = be.attention_decode(q, k_buf, v_buf, layer.sinks, self.sm_scale, q_pos=pos, k_pos=k_pos,
                                        window=layer.window)
            else:
                k_all, v_all, k_pos = cache.layers[n].update(start, k, v)        # the keys these queries see
                if t == 1:                                                       # decode: every one is visible
                    o = be.attention_decode(q, k_all, v_all, layer.sinks, self.sm_scale)
                else:
                    o = be.attention(q, k_all, v_all, layer.sinks, positions, k_pos, layer.window, self.sm_scale,
                                     q_start=start, k_start=start + t - k_all.shape[0])
            x = x + be.linear(o, layer.out_w, layer.out_b)
            # ---- mixture of experts ----
            h = be.rms_norm(x, layer.mlp_norm, eps)
            idx, weights = be.route(h, layer.gate_w, layer.gate_b, cfg.experts_per_token)  # [T, K], [T, K] f32
            x = x + self._moe(layer, h, idx, weights)
        if cache is not None and pos is None:
            cache.length = start + t
        return x
