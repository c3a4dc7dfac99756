"""MXFP4 (OCP MX, E2M1 elements + E8M0 block scales) decoding, spec §3.

`blocks[..., g, j]` holds element 32g+2j in its low nibble and 32g+2j+1 in its high nibble;
`scales[..., g]` multiplies block g by 2^(s-127). Every decoded value is exactly representable in
bf16 (a 2-bit mantissa times a power of two), so decoding to fp32 or bf16 is exact either way.
"""

from __future__ import annotations

import torch

FP4_VALUES: tuple[float, ...] = (
    +0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
    -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
)

_PAIR_LUT: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _pair_lut(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[256, 2]: byte -> (value of low nibble, value of high nibble)."""
    key = (device, dtype)
    lut = _PAIR_LUT.get(key)
    if lut is None:
        vals = torch.tensor(FP4_VALUES, dtype=torch.float32)
        byte = torch.arange(256)
        lut = torch.stack((vals[byte & 0x0F], vals[byte >> 4]), dim=-1).to(device=device, dtype=dtype)
        _PAIR_LUT[key] = lut
    return lut


def dequantize(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unpack MXFP4: blocks [..., G, 16] uint8, scales [..., G] uint8 -> [..., G*32] `dtype` (exact)."""
    assert blocks.dtype == torch.uint8 and scales.dtype == torch.uint8
    assert blocks.shape[:-1] == scales.shape and blocks.shape[-1] == 16
    *prefix, groups, _ = blocks.shape
    lut = _pair_lut(blocks.device, torch.float32)
    vals = lut[blocks.long()]                                   # [..., G, 16, 2] f32
    vals = vals.view(*prefix, groups, 32)                       # [..., G, 32]
    exps = scales.to(torch.int32) - 127                         # [..., G]
    out = torch.ldexp(vals, exps.unsqueeze(-1))                 # exact: power-of-two scaling
    return out.reshape(*prefix, groups * 32).to(dtype)
