"""The pure-torch operations of the forward pass (spec §1.2): the reference every backend is checked against.

They run on any torch device. Precision: bf16 inputs and outputs, fp32 for RMSNorm statistics, attention
scores and softmax (sinks included), MoE accumulation and the final logits. `engine.backends.base.Backend`
calls these by default; a backend overrides only the operations it has something faster for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.stacked import StackedRows

# Attention score memory per call is bounded by splitting queries into chunks of at most this many
# fp32 score elements (heads x queries x keys).
_SCORE_BUDGET = 1 << 24
_REFINE_TOP = 64
_CAUSAL_CHUNK = 128  # prefill query chunk on full-attention layers (keys after the chunk are skipped)


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """x [T, D] bf16, scale [D] f32 -> [T, D] bf16 with fp32 statistics."""
    t = x.float()
    t = t * torch.rsqrt(t.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (t * scale).to(x.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor | StackedRows, bias: torch.Tensor | StackedRows | None) -> torch.Tensor:
    """x [T, D] bf16 @ weight [N, D].T + bias -> [T, N] bf16 (torch's bf16 GEMM: fp32 sums, one rounding)."""
    if isinstance(weight, StackedRows):                                # [N_i, D] parts: one product each
        biases = bias.parts if isinstance(bias, StackedRows) else (
            bias.split(list(weight.rows)) if bias is not None else (None,) * len(weight.parts))
        return torch.cat([F.linear(x, w, b) for w, b in zip(weight.parts, biases)], dim=-1)
    return F.linear(x, weight, bias)


def logits_fp32(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [T, D] bf16 @ weight[V, D].T bf16 -> [T, V] f32.

    CUDA: one GEMM with fp32 output (exact products, fp32 sums). Elsewhere torch has no bf16 GEMM with fp32
    output and upcasting the [V, D] matrix costs 15-20x the GEMM, so: a bf16 GEMM (fp32 accumulation, output
    rounded to bf16, as the reference implementations do), then the top `_REFINE_TOP` logits of each row
    recomputed exactly in fp32. Every decision (argmax, nucleus) sees exact fp32 values; the tail carries
    the bf16 rounding (|err| <= 2^-9 |logit|).
    """
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


def route(h: torch.Tensor, gate_w: torch.Tensor, gate_b: torch.Tensor, k: int,
          linear_fn=linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Router: h [T, D] bf16 -> (expert ids [T, k] int64, weights [T, k] f32), top-k then softmax over the k."""
    logits = linear_fn(h, gate_w, gate_b)                                   # [T, E] bf16
    top = torch.topk(logits, k, dim=-1, sorted=True)
    return top.indices, torch.softmax(top.values.float(), dim=-1)


def _consecutive(pos: torch.Tensor) -> bool:
    """pos [N] int64 is first, first+1, ..., first+N-1 (reads the tensor: host code only)."""
    n = pos.shape[0]
    return n > 0 and int(pos[-1]) - int(pos[0]) == n - 1 and bool((pos[1:] - pos[:-1] == 1).all())


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sinks: torch.Tensor,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    window: int | None,
    sm_scale: float,
    *,
    banded: bool | None = None,
) -> torch.Tensor:
    """Causal GQA attention with sinks.

    q [T, Hkv, G, d] bf16 (q-head h = kv*G + g), k/v [S, Hkv, d] bf16, sinks [Hkv*G] f32,
    q_pos [T] / k_pos [S] absolute positions. Key j is visible to query i iff k_pos[j] <= q_pos[i] and
    (window is None or q_pos[i] - k_pos[j] < window). Returns [T, Hkv*G*d] bf16.

    With consecutive positions (prefill) queries go in chunks (window/2 on sliding layers, _CAUSAL_CHUNK on
    full ones) and each chunk is scored only against the keys it can see at all (its window, nothing after
    its last query), with the same mask: every visible key is still scored, invisible ones only ever
    contributed exact zeros, so the result is the masked computation's up to fp32 summation order.
    `banded=False` skips that (and the host reads it needs: a CUDA-graph step passes it).
    """
    t, hkv, g, d = q.shape
    s = k.shape[0]
    kf = k.float().permute(1, 2, 0)                                  # [Hkv, d, S]
    vf = v.float().transpose(0, 1)                                   # [Hkv, S, d]
    sink = sinks.view(hkv, g, 1, 1)                                  # [Hkv, G, 1, 1] f32
    rows = max(1, _SCORE_BUDGET // max(1, hkv * g * s))
    if banded is None:
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


def attention_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                  sm_scale: float) -> torch.Tensor:
    """`attention` for one query that sees every key given (decode): the same ops without the mask.

    q [1, Hkv, G, d] bf16, k/v [S, Hkv, d] bf16, sinks [Hkv*G] f32 -> [1, Hkv*G*d] bf16.
    """
    _, hkv, g, d = q.shape
    s = k.shape[0]
    scores = torch.matmul(q[0].float(), k.float().permute(1, 2, 0)) * sm_scale  # [Hkv, G, S] f32
    full = torch.cat((scores, sinks.view(hkv, g, 1)), dim=-1)                    # [Hkv, G, S+1]
    probs = torch.softmax(full, dim=-1)[..., :s]                                 # [Hkv, G, S] f32
    o = torch.matmul(probs, v.float().transpose(0, 1))                           # [Hkv, G, d] f32
    return o.reshape(1, hkv * g * d).to(torch.bfloat16)
