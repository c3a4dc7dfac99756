"""The gpt-oss transformer (spec §1.2), running on weights straight from a memory-mapped checkpoint.

Precision: bf16 weights and activations; fp32 for RMSNorm statistics, attention scores and softmax
(sinks included), the router softmax, expert accumulation (engine.moe) and the final logits.
Dense matmuls (qkv, out, router) are bf16 x bf16 -> bf16 like the reference implementation; their inputs
and outputs are what the reference sees, so expert selection agrees with it wherever the inputs do.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine import kernels
from engine.checkpoint import Checkpoint, open_checkpoint
from engine.config import ModelConfig
from engine.file_rows import FileRows
from engine.kv_cache import KVCache
from engine.moe import PackedExperts, moe_experts
from engine.rope import Rope, apply_rope
from engine.stacked import StackedRows

log = logging.getLogger(__name__)

# Attention score memory per call is bounded by splitting queries into chunks of at most this many
# fp32 score elements (heads x queries x keys).
_SCORE_BUDGET = 1 << 24
_SERIAL_TORCH_TOKENS = 8  # forward calls of at most this many tokens run torch ops single-threaded
_REFINE_TOP = 64
_CAUSAL_CHUNK = 128  # prefill query chunk on full-attention layers (keys after the chunk are skipped)


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """x [T, D] bf16, scale [D] f32 -> [T, D] bf16 with fp32 statistics."""
    if x.dtype == torch.bfloat16 and scale.dtype == torch.float32 and kernels.use_native(x.device):
        return kernels.rms_norm(x, scale, eps)
    t = x.float()
    t = t * torch.rsqrt(t.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (t * scale).to(x.dtype)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sinks: torch.Tensor,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    window: int | None,
    sm_scale: float,
) -> torch.Tensor:
    """Causal GQA attention with sinks.

    q [T, Hkv, G, d] bf16 (q-head h = kv*G + g), k/v [S, Hkv, d] bf16, sinks [Hkv*G] f32,
    q_pos [T] / k_pos [S] absolute positions. Key j is visible to query i iff k_pos[j] <= q_pos[i] and
    (window is None or q_pos[i] - k_pos[j] < window). Returns [T, Hkv*G*d] bf16.

    With consecutive positions (prefill) queries go in chunks (window/2 on sliding layers, _CAUSAL_CHUNK on
    full ones) and each chunk is scored only against the keys it can see at all (its window, nothing after
    its last query), with the same mask: every visible key is still scored, invisible ones only ever
    contributed exact zeros, so the result is the masked computation's up to fp32 summation order.
    """
    t, hkv, g, d = q.shape
    s = k.shape[0]
    kf = k.float().permute(1, 2, 0)                                  # [Hkv, d, S]
    vf = v.float().transpose(0, 1)                                   # [Hkv, S, d]
    sink = sinks.view(hkv, g, 1, 1)                                  # [Hkv, G, 1, 1] f32
    rows = max(1, _SCORE_BUDGET // max(1, hkv * g * s))
    banded = t > 1 and _consecutive(q_pos) and _consecutive(k_pos)
    if banded:
        rows = min(rows, _CAUSAL_CHUNK if window is None else max(1, window // 2))
        k0 = int(k_pos[0])
    out = []
    for a in range(0, t, rows):
        lo, hi = 0, s
        if banded:
            last = min(t, a + rows) - 1
            if window is not None:                                   # oldest key the chunk's first query sees
                lo = min(s - 1, max(0, int(q_pos[a]) - window + 1 - k0))
            hi = max(lo + 1, min(s, int(q_pos[last]) - k0 + 1))         # newest key its last query sees
        qc = q[a:a + rows].float().permute(1, 2, 0, 3)               # [Hkv, G, t, d]
        tc, sc = qc.shape[2], hi - lo
        scores = torch.matmul(qc.reshape(hkv, g * tc, d), kf[:, :, lo:hi]).view(hkv, g, tc, sc) * sm_scale
        qp = q_pos[a:a + rows, None]                                 # [t, 1]
        kp = k_pos[None, lo:hi]                                      # [1, Sc]
        visible = kp <= qp                                           # [t, Sc]
        if window is not None:
            visible &= (qp - kp) < window
        scores = scores.masked_fill(~visible, float("-inf"))         # [Hkv, G, t, Sc]
        # softmax over [scores, sink]; the sink only enters the denominator
        full = torch.cat((scores, sink.expand(hkv, g, tc, 1)), dim=-1)   # [Hkv, G, t, Sc+1]
        probs = torch.softmax(full, dim=-1)[..., :sc]                # [Hkv, G, t, Sc] f32
        o = torch.matmul(probs.reshape(hkv, g * tc, sc), vf[:, lo:hi])   # [Hkv, G*t, d] f32
        out.append(o.view(hkv, g, tc, d).permute(2, 0, 1, 3).reshape(tc, hkv * g * d))
    return torch.cat(out).to(torch.bfloat16) if len(out) > 1 else out[0].to(torch.bfloat16)


def _consecutive(pos: torch.Tensor) -> bool:
    """pos [N] int64 is first, first+1, ..., first+N-1."""
    n = pos.shape[0]
    return n > 0 and int(pos[-1]) - int(pos[0]) == n - 1 and bool((pos[1:] - pos[:-1] == 1).all())


def attention_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                  sm_scale: float) -> torch.Tensor:
    """`attention` for one query that sees every key given (decode): the same ops without the mask.

    q [1, Hkv, G, d] bf16, k/v [S, Hkv, d] bf16, sinks [Hkv*G] f32 -> [1, Hkv*G*d] bf16.
    """
    _, hkv, g, d = q.shape
    s = k.shape[0]
    if kernels.use_native(q.device) and sinks.dtype == torch.float32 and sinks.is_contiguous():
        o = kernels.attention_decode(q[0], k, v, sinks, sm_scale)
        if o is not None:
            return o
    scores = torch.matmul(q[0].float(), k.float().permute(1, 2, 0)) * sm_scale  # [Hkv, G, S] f32
    full = torch.cat((scores, sinks.view(hkv, g, 1)), dim=-1)                    # [Hkv, G, S+1]
    probs = torch.softmax(full, dim=-1)[..., :s]                                 # [Hkv, G, S] f32
    o = torch.matmul(probs, v.float().transpose(0, 1))                           # [Hkv, G, d] f32
    return o.reshape(1, hkv * g * d).to(torch.bfloat16)


def linear(x: torch.Tensor, weight: torch.Tensor | StackedRows, bias: torch.Tensor | StackedRows | None) -> torch.Tensor:
    """x [T, D] bf16 @ weight [N, D].T + bias -> [T, N] bf16: fp32 sums, bias added in fp32, one rounding.

    The native kernel (CPU) and F.linear agree up to fp32 summation order; the native one streams the
    weights at memory speed for decode, where F.linear in bf16 reaches a few GB/s.
    """
    if kernels.use_native(x.device):
        return kernels.linear_bf16(x, weight, bias)
    if isinstance(weight, StackedRows):                                # [N_i, D] parts: one product each
        biases = bias.parts if isinstance(bias, StackedRows) else (
            bias.split(list(weight.rows)) if bias is not None else (None,) * len(weight.parts))
        return torch.cat([F.linear(x, w, b) for w, b in zip(weight.parts, biases)], dim=-1)
    return F.linear(x, weight, bias)


def logits_fp32(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [T, D] bf16 @ weight[V, D].T bf16 -> [T, V] f32.

    CPU with the native kernels: exact products and fp32 sums for every logit, streaming the weight once.
    CUDA: one GEMM with fp32 output (exact products, fp32 sums). Elsewhere torch has no bf16 GEMM with
    fp32 output and upcasting the [V, D] matrix costs 15-20x the GEMM, so: a bf16 GEMM (fp32 accumulation,
    output rounded to bf16, as the reference implementations do), then the top `_REFINE_TOP` logits of each
    row recomputed exactly in fp32. Every decision (argmax, nucleus) sees exact fp32 values; the tail
    carries the bf16 rounding (|err| <= 2^-9 |logit|).
    """
    if kernels.use_native(x.device):
        return kernels.linear_bf16(x, weight, None, out_dtype=torch.float32)
    if x.device.type == "cuda":
        try:
            return torch.mm(x, weight.t(), out_dtype=torch.float32)
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    logits = F.linear(x, weight).float()                                   # [T, V] (bf16-rounded)
    top = logits.topk(min(_REFINE_TOP, logits.shape[1]), dim=-1).indices    # [T, k]
    rows = weight[top.reshape(-1)].float().view(*top.shape, -1)            # [T, k, D]
    exact = torch.einsum("td,tkd->tk", x.float(), rows)                    # [T, k] fp32
    return logits.scatter_(1, top, exact)


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


class Transformer(torch.nn.Module):
    """gpt-oss forward pass; weights are plain tensors (mmap views on CPU)."""

    def __init__(self, config: ModelConfig, embedding: torch.Tensor, layers: list[Layer], norm: torch.Tensor,
                 unembedding: torch.Tensor, device: torch.device) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding          # [V, D] bf16
        self.layers = layers
        self.norm = norm                    # [D] f32
        self.unembedding = unembedding      # [V, D] bf16
        self.device = device
        self.rope = Rope(config, device)
        self.sm_scale = 1.0 / math.sqrt(config.head_dim)
        self.moe = moe_experts              # swappable expert kernel with moe_experts' signature
        self.checkpoint: Checkpoint | None = None
        self.embedding_rows: FileRows | None = None  # CPU: embedding rows read from the file (not mapped)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, model_dir: Path | str | Checkpoint, device: str | torch.device = "cpu") -> "Transformer":
        ckpt = model_dir if isinstance(model_dir, Checkpoint) else open_checkpoint(model_dir)
        cfg = ckpt.config
        dev = torch.device(device)

        def get(name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
            t = ckpt.get(name)
            if dtype is not None and t.dtype != dtype:
                t = t.to(dtype)
            return t.to(dev) if dev.type != "cpu" else t

        def get_stacked(name: str) -> torch.Tensor | StackedRows:
            """On CPU a tensor stored in pieces (HF q/k/v_proj) stays in pieces: no 0.7 GB copy at 20b."""
            parts = ckpt.get_parts(name)
            if dev.type != "cpu" or len(parts) == 1:
                return get(name)
            return StackedRows(tuple(parts))

        layers = []
        for n in range(cfg.num_hidden_layers):
            p = f"block.{n}."
            experts = PackedExperts(
                get(p + "mlp.mlp1_weight.blocks"), get(p + "mlp.mlp1_weight.scales"), get(p + "mlp.mlp1_bias"),
                get(p + "mlp.mlp2_weight.blocks"), get(p + "mlp.mlp2_weight.scales"), get(p + "mlp.mlp2_bias"),
            )
            layers.append(Layer(
                attn_norm=get(p + "attn.norm.scale", torch.float32),
                qkv_w=get_stacked(p + "attn.qkv.weight"), qkv_b=get_stacked(p + "attn.qkv.bias"),
                sinks=get(p + "attn.sinks", torch.float32),
                out_w=get(p + "attn.out.weight"), out_b=get(p + "attn.out.bias"),
                mlp_norm=get(p + "mlp.norm.scale", torch.float32),
                gate_w=get(p + "mlp.gate.weight"), gate_b=get(p + "mlp.gate.bias"),
                experts=experts,
                window=cfg.sliding_window if cfg.is_sliding(n) else None,
            ))
        model = cls(cfg, get("embedding.weight"), layers, get("norm.scale", torch.float32),
                    get("unembedding.weight"), dev)
        model.checkpoint = ckpt
        where = ckpt.byte_range("embedding.weight")
        if dev.type == "cpu" and where is not None and FileRows.supported():
            path, offset, _ = where
            model.embedding_rows = FileRows(path, offset, cfg.vocab_size, cfg.hidden_size, model.embedding.dtype)
        return model

    # ---- forward -----------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, *, last_only: bool = False) -> torch.Tensor:
        """tokens [T] int64 -> logits [T, vocab] f32 (or [1, vocab] with last_only).

        Without a cache: one pass over the sequence at positions 0..T-1. With a cache: positions continue
        after `cache.length`, keys/values are stored, `cache.length` grows by T.
        """
        tokens = tokens.to(self.device).reshape(-1)
        if cache is not None:
            cache.check_room(tokens.shape[0])
            step = cache.max_chunk
            if tokens.shape[0] > step:
                parts = [self.forward(tokens[a:a + step], cache, last_only=last_only)
                         for a in range(0, tokens.shape[0], step)]
                return parts[-1] if last_only else torch.cat(parts)
        # Decode-sized steps: torch's own ops (norms, rope, attention on a few rows) run single-threaded
        # while the native kernels keep their threads; a fork-join region per tiny op costs more than it
        # saves, and on a busy machine each one can wait a scheduler time slice for a preempted thread.
        small = tokens.shape[0] <= _SERIAL_TORCH_TOKENS and kernels.use_native(self.device)
        with kernels.serial_torch(small):
            x = self._hidden(tokens, cache)                          # [T, D] bf16
            if last_only:
                x = x[-1:]
            x = rms_norm(x, self.norm, self.config.rms_norm_eps)
            return logits_fp32(x, self.unembedding)                  # [T, V] f32

    def _hidden(self, tokens: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        cfg = self.config
        t = tokens.shape[0]
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + t, device=self.device)          # [T]
        cos, sin = self.rope.cos_sin(positions, torch.bfloat16)                 # [T, d/2]
        x = (self.embedding_rows.lookup(tokens) if self.embedding_rows is not None   # [T, D] bf16
             else F.embedding(tokens, self.embedding))
        hkv, g, d = cfg.num_key_value_heads, cfg.num_attention_heads // cfg.num_key_value_heads, cfg.head_dim
        qw, kw = cfg.q_width, cfg.kv_width
        for n, layer in enumerate(self.layers):
            # ---- attention ----
            h = rms_norm(x, layer.attn_norm, cfg.rms_norm_eps)
            qkv = linear(h, layer.qkv_w, layer.qkv_b)                          # [T, Q+2K] bf16
            qk = apply_rope(qkv[:, :qw + kw].reshape(t, hkv * g + hkv, d), cos, sin)  # [T, H+Hkv, d]
            q = qk[:, :hkv * g].reshape(t, hkv, g, d)                            # [T, Hkv, G, d]
            k = qk[:, hkv * g:]                                                  # [T, Hkv, d]
            v = qkv[:, qw + kw:].reshape(t, hkv, d)                              # [T, Hkv, d]
            if cache is None:
                k_all, v_all, k_pos = k, v, positions
            else:
                lc = cache.layers[n]
                lc.write(start, k, v)
                begin = 0 if layer.window is None else max(0, start - layer.window + 1)
                k_all, v_all = lc.read(begin, start + t)
            if t == 1 and cache is not None:                                     # decode: every key read is visible
                o = attention_one(q, k_all, v_all, layer.sinks, self.sm_scale)
            else:
                if cache is not None:
                    k_pos = torch.arange(begin, start + t, device=self.device)
                o = attention(q, k_all, v_all, layer.sinks, positions, k_pos, layer.window, self.sm_scale)
            x = x + linear(o, layer.out_w, layer.out_b)
            # ---- mixture of experts ----
            h = rms_norm(x, layer.mlp_norm, cfg.rms_norm_eps)
            router = linear(h, layer.gate_w, layer.gate_b)                      # [T, E] bf16
            top = torch.topk(router, cfg.experts_per_token, dim=-1, sorted=True)
            weights = torch.softmax(top.values.float(), dim=-1)                 # [T, K] f32
            x = x + self.moe(h, top.indices, weights, layer.experts, cfg.swiglu_limit)
        if cache is not None:
            cache.length = start + t
        return x
