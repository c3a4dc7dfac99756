"""Building blocks against the spec: YaRN tables (§1.4), MXFP4 decoding (§3), MoE semantics, attention mask."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import engine.kernels
import engine.moe
from engine.checkpoint import open_checkpoint
from engine.config import ModelConfig
from engine.model import attention
from engine.moe import PackedExperts, moe_experts
from engine.mxfp4 import dequantize
from engine.rope import Rope, apply_rope, yarn_params

GPT_OSS_20B = ModelConfig(num_hidden_layers=24, num_experts=32, experts_per_token=4, vocab_size=201088,
                          hidden_size=2880, intermediate_size=2880, head_dim=64, num_attention_heads=64,
                          num_key_value_heads=8)


def test_yarn_tables_match_spec_numbers() -> None:
    p = yarn_params(GPT_OSS_20B)
    assert p.low == pytest.approx(8.092779, abs=1e-6)            # spec §1.4, unrounded
    assert p.high == pytest.approx(17.398025, abs=1e-6)
    assert p.concentration == pytest.approx(1.3465736, abs=1e-7)
    spec_mask = [1.0] * 9 + [0.903, 0.795, 0.688, 0.580, 0.473, 0.365, 0.258, 0.150, 0.043] + [0.0] * 14
    assert p.mask.tolist() == pytest.approx(spec_mask, abs=6e-4)
    freq = 150000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    assert p.inv_freq[:9].double().tolist() == pytest.approx((1 / freq[:9]).tolist(), rel=1e-6)
    assert p.inv_freq[18:].double().tolist() == pytest.approx((1 / (32 * freq[18:])).tolist(), rel=1e-6)
    # the metal header stores the same thing as offset/scale (spec §1.4)
    assert -p.low / (p.high - p.low) == pytest.approx(-0.8697008, abs=1e-6)
    assert 1 / (p.high - p.low) == pytest.approx(0.1074663, abs=1e-6)


def test_rope_is_rotate_half_and_scaled() -> None:
    rope = Rope(GPT_OSS_20B)
    pos = torch.tensor([0, 1, 1000])
    cos, sin = rope.cos_sin(pos, torch.float32)
    assert torch.allclose(cos[0], torch.full((32,), 1.3465736))
    x = torch.zeros(3, 1, 64)
    x[:, 0, 0] = 1.0                                              # e_0 pairs with e_32
    y = apply_rope(x, cos, sin)[:, 0]
    angle = 1000 * rope.inv_freq[0].item()
    assert y[2, 0].item() == pytest.approx(math.cos(angle) * 1.3465736, abs=1e-4)
    assert y[2, 32].item() == pytest.approx(math.sin(angle) * 1.3465736, abs=1e-4)
    assert y[2, 1:32].abs().max() == 0 and y[2, 33:].abs().max() == 0


def test_mxfp4_decoding_spec_example_and_layout() -> None:
    blocks = torch.zeros(1, 16, dtype=torch.uint8)
    blocks[0, 0] = 0x3A                                           # spec §3 example, scale 126
    out = dequantize(blocks, torch.tensor([126], dtype=torch.uint8))
    assert out.shape == (32,)
    assert out[:2].tolist() == [-0.5, 0.75] and out[2:].abs().sum() == 0
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 256, (3, 5, 2, 16), generator=g).to(torch.uint8)
    scales = torch.randint(110, 140, (3, 5, 2), generator=g).to(torch.uint8)
    lut = torch.tensor([0.0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6])
    naive = torch.empty(3, 5, 64)
    for grp in range(2):
        for j in range(16):
            b = blocks[:, :, grp, j].long()
            s = 2.0 ** (scales[:, :, grp].double() - 127)
            naive[:, :, 32 * grp + 2 * j] = (lut[b & 15].double() * s).float()
            naive[:, :, 32 * grp + 2 * j + 1] = (lut[b >> 4].double() * s).float()
    assert torch.equal(dequantize(blocks, scales), naive)
    assert torch.equal(dequantize(blocks, scales, torch.bfloat16).float(), naive)   # exact in bf16


def _dense_moe(h, idx, w, ex: PackedExperts, limit: float) -> torch.Tensor:
    """The documented semantics written out densely in float64 (then compared at fp32 precision)."""
    w1 = dequantize(ex.mlp1_blocks, ex.mlp1_scales).double()     # [E, 2I, D]
    w2 = dequantize(ex.mlp2_blocks, ex.mlp2_scales).double()     # [E, D, I]
    out = torch.zeros(h.shape, dtype=torch.float64)
    for t in range(h.shape[0]):
        for k in range(idx.shape[1]):
            e = int(idx[t, k])
            u = w1[e] @ h[t].double() + ex.mlp1_bias[e].double()
            g, up = u[0::2].clamp(max=limit), u[1::2].clamp(-limit, limit)
            a = (g * torch.sigmoid(1.702 * g) * (up + 1)).to(torch.bfloat16).double()
            out[t] += float(w[t, k]) * (w2[e] @ a + ex.mlp2_bias[e].double())
    return out


def _layer0(root: Path) -> tuple[PackedExperts, int]:
    ck = open_checkpoint(root / "original")
    p = "block.0.mlp."
    ex = PackedExperts(ck.get(p + "mlp1_weight.blocks"), ck.get(p + "mlp1_weight.scales"), ck.get(p + "mlp1_bias"),
                       ck.get(p + "mlp2_weight.blocks"), ck.get(p + "mlp2_weight.scales"), ck.get(p + "mlp2_bias"))
    return ex, ck.config.hidden_size


@pytest.mark.parametrize("tokens", [1, 7])
@pytest.mark.parametrize("native", [False, True], ids=["torch", "native"])
def test_moe_matches_dense_semantics_and_expands_only_selected(tiny_model_dir: Path, tokens: int, native: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if native and not engine.kernels.available():
        pytest.skip(f"native kernels not built: {engine.kernels.status().reason}")
    ex, d = _layer0(tiny_model_dir)
    g = torch.Generator().manual_seed(tokens)
    h = (torch.randn(tokens, d, generator=g) * 2).to(torch.bfloat16)
    idx = torch.stack([torch.randperm(ex.num_experts, generator=g)[:2] for _ in range(tokens)])
    if tokens > 1:
        idx[:, 0] = 1                        # expert 1 always chosen, expert 3 never
        idx[:, 1] = torch.where(idx[:, 1] == 3, 0, idx[:, 1])
        idx[idx[:, 1] == 1, 1] = 2
    w = torch.softmax(torch.randn(tokens, 2, generator=g), -1)
    decoded: list[int] = []
    real = engine.moe.dequantize
    monkeypatch.setattr(engine.moe, "dequantize", lambda b, s, *a: decoded.append(b.shape[0]) or real(b, s, *a))
    if native:
        from engine.backends.cpu import CpuNativeBackend

        out = CpuNativeBackend().moe(h, idx, w, ex, 7.0)
    else:
        out = moe_experts(h, idx, w, ex, 7.0)
    assert out.dtype == torch.bfloat16 and out.shape == (tokens, d)
    dense = _dense_moe(h, idx, w, ex, 7.0)
    # one bf16 rounding at the end (the fp32 sums agree with float64 to ~1e-6 relative)
    assert torch.allclose(out.double(), dense, rtol=2 ** -8, atol=1e-5)
    if native:                                             # the kernel reads packed nibbles directly
        assert decoded == []
        return
    n_selected = len(set(idx.reshape(-1).tolist()))
    assert len(decoded) == 2 * n_selected                  # one mlp1 + one mlp2 decode per selected expert
    assert all(rows in (2 * 64, 64) for rows in decoded)   # a single expert's matrix each time, never all E


def test_swiglu_clamps_and_interleave() -> None:
    u = torch.tensor([[10.0, 10.0, -10.0, -10.0, 1.0, 2.0]])    # (gate, up) pairs
    out = engine.moe.swiglu(u, 7.0)[0]
    assert out[0].item() == pytest.approx(7 * torch.sigmoid(torch.tensor(1.702 * 7)).item() * 8, rel=1e-6)
    assert out[1].item() == pytest.approx(-10 * torch.sigmoid(torch.tensor(-17.02)).item() * -6, rel=1e-5)
    assert out[2].item() == pytest.approx(1 * torch.sigmoid(torch.tensor(1.702)).item() * 3, rel=1e-6)


def test_attention_window_and_sinks_exactly() -> None:
    """128-token window including self: query at 200 sees keys 73..200; sinks only add to the denominator."""
    s, d = 201, 64
    k = torch.zeros(s, 1, d, dtype=torch.bfloat16)               # all scores 0
    v = torch.zeros(s, 1, d, dtype=torch.bfloat16)
    v[:, 0, 0] = torch.arange(s, dtype=torch.bfloat16) >= 0     # value 1 everywhere in dim 0
    v[:, 0, 1] = (torch.arange(s) < 73).to(torch.bfloat16)       # 1 only on keys outside the window
    q = torch.zeros(1, 1, 1, d, dtype=torch.bfloat16)
    pos = torch.arange(s)
    sink = torch.tensor([math.log(3.0)])
    out = attention(q, k, v, sink, torch.tensor([200]), pos, 128, 0.125).float()[0]
    assert out[0].item() == pytest.approx(128 / (128 + 3), abs=2e-3)   # exactly 128 visible keys + sink
    assert out[1].item() == 0.0                                        # nothing outside the window
    out = attention(q, k, v, sink, torch.tensor([200]), pos, None, 0.125).float()[0]
    assert out[0].item() == pytest.approx(201 / (201 + 3), abs=2e-3)
    # causal: a query never sees later keys
    out = attention(q, k, v, sink, torch.tensor([10]), pos, None, 0.125).float()[0]
    assert out[0].item() == pytest.approx(11 / 14, abs=2e-3)
