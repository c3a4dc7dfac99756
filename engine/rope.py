"""Rotary position embedding with YaRN scaling, rotate-half pairing (spec §1.4).

The ramp bounds are NOT rounded (HF `truncate=false`); angles are computed in fp32 from absolute
positions; cos/sin are scaled by the YaRN concentration and cast to the activation dtype before the
multiply, as the reference does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.config import ModelConfig


@dataclass(frozen=True, slots=True)
class YarnParams:
    low: float                  # ramp start (dimension index, unrounded)
    high: float                 # ramp end
    concentration: float        # cos/sin multiplier, 0.1*ln(factor)+1
    mask: torch.Tensor          # [head_dim/2] f32: 1 keeps the original frequency, 0 interpolates by /factor
    inv_freq: torch.Tensor      # [head_dim/2] f32


def yarn_params(cfg: ModelConfig) -> YarnParams:
    d_half = cfg.head_dim // 2
    freq = cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim)  # [d/2]
    if cfg.rope_scaling_factor <= 1.0:
        ones = torch.ones(d_half)
        return YarnParams(0.0, 0.0, 1.0, ones, 1.0 / freq)
    concentration = 0.1 * math.log(cfg.rope_scaling_factor) + 1.0
    ctx = cfg.initial_context_length
    low = d_half * math.log(ctx / (cfg.rope_ntk_beta * 2 * math.pi)) / math.log(cfg.rope_theta)
    high = d_half * math.log(ctx / (cfg.rope_ntk_alpha * 2 * math.pi)) / math.log(cfg.rope_theta)
    assert 0 < low < high < d_half - 1, "YaRN ramp bounds out of range for this config"
    interpolation = 1.0 / (cfg.rope_scaling_factor * freq)
    extrapolation = 1.0 / freq
    ramp = (torch.arange(d_half, dtype=torch.float32) - low) / (high - low)
    mask = 1 - ramp.clamp(0, 1)
    inv_freq = interpolation * (1 - mask) + extrapolation * mask
    return YarnParams(low, high, concentration, mask, inv_freq)


class Rope:
    """cos/sin for arbitrary absolute positions, on one device."""

    def __init__(self, cfg: ModelConfig, device: torch.device | str = "cpu") -> None:
        self.params = yarn_params(cfg)
        self.inv_freq = self.params.inv_freq.to(device)          # [d/2] f32
        self.concentration = self.params.concentration

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [T] int64 -> cos, sin [T, d/2] in `dtype` (scaled by the concentration)."""
        angle = positions.to(torch.float32)[:, None] * self.inv_freq[None, :]   # [T, d/2] f32
        return (angle.cos() * self.concentration).to(dtype), (angle.sin() * self.concentration).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half: x [T, ..., d] with pairs (i, i+d/2); cos/sin [T, d/2] already in x.dtype."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[-1],)
    cos, sin = cos.view(shape), sin.view(shape)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
