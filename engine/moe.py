"""Mixture-of-experts feed-forward on packed MXFP4 experts (pure-torch reference path).

Semantics (shared by every backend's MoE, docs/backends.md): matmul inputs are bf16 values (the normed
activations as given; the swiglu output rounded to bf16), products accumulated in fp32, biases added in
fp32, swiglu in fp32, expert outputs weighted and summed in fp32, the result rounded to bf16 once.
Only the experts some token selected are decoded, one at a time; the rest stay packed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.mxfp4 import dequantize

SWIGLU_ALPHA = 1.702


@dataclass(frozen=True, slots=True)
class PackedExperts:
    """One layer's experts exactly as stored in the checkpoint (E experts, D hidden, I intermediate)."""

    mlp1_blocks: torch.Tensor   # [E, 2I, D/32, 16] u8   rows interleaved: gate0, up0, gate1, up1, ...
    mlp1_scales: torch.Tensor   # [E, 2I, D/32] u8
    mlp1_bias: torch.Tensor     # [E, 2I] bf16
    mlp2_blocks: torch.Tensor   # [E, D, I/32, 16] u8
    mlp2_scales: torch.Tensor   # [E, D, I/32] u8
    mlp2_bias: torch.Tensor     # [E, D] bf16

    @property
    def num_experts(self) -> int:
        return self.mlp1_blocks.shape[0]


def swiglu(u: torch.Tensor, limit: float) -> torch.Tensor:
    """[..., 2I] f32 (interleaved gate/up) -> [..., I] f32: min(g,L)*sigmoid(1.702*g) * (clamp(up,-L,L)+1)."""
    gate = u[..., 0::2].clamp(max=limit)
    up = u[..., 1::2].clamp(min=-limit, max=limit)
    return gate * torch.sigmoid(SWIGLU_ALPHA * gate) * (up + 1.0)


def expert_forward(x: torch.Tensor, experts: PackedExperts, e: int, swiglu_limit: float) -> torch.Tensor:
    """One expert on rows x [N, D] (bf16 values) -> [N, D] f32 (bias included, not yet weighted)."""
    w1 = dequantize(experts.mlp1_blocks[e], experts.mlp1_scales[e])            # [2I, D] f32 (bf16 values)
    u = torch.addmm(experts.mlp1_bias[e].float(), x.float(), w1.t())            # [N, 2I] f32
    del w1
    a = swiglu(u, swiglu_limit).to(torch.bfloat16)                             # [N, I] rounded once
    w2 = dequantize(experts.mlp2_blocks[e], experts.mlp2_scales[e])            # [D, I] f32
    return torch.addmm(experts.mlp2_bias[e].float(), a.float(), w2.t())         # [N, D] f32


def moe_experts_torch(
    h: torch.Tensor,
    expert_idx: torch.Tensor,
    expert_w: torch.Tensor,
    experts: PackedExperts,
    swiglu_limit: float,
) -> torch.Tensor:
    """h [T, D] bf16, expert_idx [T, K] int64, expert_w [T, K] f32 -> [T, D] bf16 = sum_k w_k * expert_k(h).

    Decodes each selected expert to fp32 and multiplies (the reference path; reads the ids on the host)."""
    t, d = h.shape
    k = expert_idx.shape[1]
    acc = torch.zeros(t, d, dtype=torch.float32, device=h.device)             # [T, D] f32
    if t == 1:                                                                 # decode: K distinct experts
        weights = expert_w[0].float()                                          # [K]
        for slot, e in enumerate(expert_idx[0].tolist()):
            acc += weights[slot] * expert_forward(h, experts, e, swiglu_limit)
        return acc.to(torch.bfloat16)
    flat_idx = expert_idx.reshape(-1)                                          # [T*K]
    flat_w = expert_w.reshape(-1).float()                                      # [T*K]
    token_of = torch.arange(t, device=h.device).repeat_interleave(k)           # [T*K]
    for e in torch.unique(flat_idx).tolist():
        rows = (flat_idx == e).nonzero(as_tuple=True)[0]                       # [N] slots routed to e
        tok = token_of[rows]                                                   # [N]
        y = expert_forward(h[tok], experts, e, swiglu_limit)                   # [N, D] f32
        acc.index_add_(0, tok, y * flat_w[rows, None])
    return acc.to(torch.bfloat16)


moe_experts = moe_experts_torch   # the reference semantics under its historical name
