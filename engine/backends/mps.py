"""`mps`: the forward pass on Apple's Metal through torch's MPS device.

Only operations torch implements on MPS are used (no op that would silently fall back to the CPU; its
tests run with PYTORCH_ENABLE_MPS_FALLBACK=0): matmuls, softmax, top-k, gathers and elementwise ops. The
code is device-agnostic and its numerics are tested on the CPU device (`--device cpu --backend mps`).

The experts stay packed on the device; each step decodes only the experts some token selected, to bf16
(MXFP4 values times their power-of-two scale are exact in bf16) through two small lookup tables instead
of ldexp, and multiplies in bf16 with fp32 accumulation. Decode (one token) gathers its K experts with
index_select, so it never reads the routing on the host; prefill reads the per-expert counts once per
layer to group the tokens.
"""

from __future__ import annotations

import torch

from engine.backends.base import Backend
from engine.moe import PackedExperts, swiglu
from engine.mxfp4 import FP4_VALUES


class MpsBackend(Backend):
    name = "mps"

    def __init__(self, device: torch.device | str = "mps") -> None:
        super().__init__(device)
        self._fp4 = torch.tensor(FP4_VALUES, dtype=torch.float32, device=self.device)             # [16]
        self._pow2 = torch.pow(2.0, torch.arange(256, dtype=torch.float64) - 127).to(torch.float32)
        self._pow2 = self._pow2.to(self.device)                                                  # [256] E8M0

    def _decode(self, blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """MXFP4 blocks [..., G, 16] u8, scales [..., G] u8 -> [..., G*32] bf16 (exact)."""
        *prefix, groups, _ = blocks.shape
        lo = self._fp4[(blocks & 0x0F).long()]                                     # [..., G, 16] f32
        hi = self._fp4[(blocks >> 4).long()]
        vals = torch.stack((lo, hi), dim=-1).reshape(*prefix, groups, 32)          # element 2j, 2j+1
        vals = vals * self._pow2[scales.long()].unsqueeze(-1)
        return vals.reshape(*prefix, groups * 32).to(torch.bfloat16)

    def _experts(self, x: torch.Tensor, ex: PackedExperts, sel: torch.Tensor, limit: float) -> torch.Tensor:
        """Rows x [N, D] bf16 through experts `sel` -> [N, D] f32 (bias in, not weighted).

        sel [N]: row i through expert sel[i] (decode: the K selected experts, batched matmuls);
        sel [1]: every row through that one expert (prefill, one group)."""
        per_row = sel.shape[0] > 1

        def matmul(w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:        # w [S, N_out, N_in] bf16
            if per_row:
                return torch.matmul(w, rows.unsqueeze(-1)).squeeze(-1).float()   # [N, N_out]
            return torch.matmul(rows, w[0].t()).float()

        w1 = self._decode(ex.mlp1_blocks.index_select(0, sel), ex.mlp1_scales.index_select(0, sel))  # [S, 2I, D]
        u = matmul(w1, x) + ex.mlp1_bias.index_select(0, sel).float()            # [N, 2I] f32
        del w1
        a = swiglu(u, limit).to(torch.bfloat16)                                  # [N, I]
        w2 = self._decode(ex.mlp2_blocks.index_select(0, sel), ex.mlp2_scales.index_select(0, sel))  # [S, D, I]
        return matmul(w2, a) + ex.mlp2_bias.index_select(0, sel).float()         # [N, D] f32

    def moe(self, h: torch.Tensor, expert_idx: torch.Tensor, expert_w: torch.Tensor, experts: PackedExperts,
            swiglu_limit: float) -> torch.Tensor:
        t, d = h.shape
        k = expert_idx.shape[1]
        if t == 1:                                        # K experts, gathered on the device
            y = self._experts(h.expand(k, d), experts, expert_idx[0], swiglu_limit)             # [K, D] f32
            return (expert_w[0].float()[:, None] * y).sum(dim=0, keepdim=True).to(torch.bfloat16)
        flat = expert_idx.reshape(-1)                                               # [T*K]
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=experts.num_experts).tolist()       # one host read per layer
        token_of = torch.div(order, k, rounding_mode="floor")                       # [T*K] sorted
        weight_of = expert_w.reshape(-1).float()[order]
        acc = torch.zeros(t, d, dtype=torch.float32, device=h.device)
        at = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            tok = token_of[at:at + n]
            sel = torch.tensor([e], device=h.device)
            y = self._experts(h.index_select(0, tok), experts, sel, swiglu_limit)   # [n, D] f32
            acc.index_add_(0, tok, y * weight_of[at:at + n, None])
            at += n
        return acc.to(torch.bfloat16)
