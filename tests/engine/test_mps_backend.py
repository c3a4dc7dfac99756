"""The mps backend's code on the CPU device (`--device cpu --backend mps`): same parity criteria as the other
backends, greedy tokens equal to the CPU path, and the MoE decodes only the experts some token selected.

On a Mac the same tests run on the MPS device with PYTORCH_ENABLE_MPS_FALLBACK=0 (`make test-gpu`), so an
operator MPS lacks fails instead of silently running on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch

os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "0"

from engine.backends import select  # noqa: E402
from engine.backends.mps import MpsBackend  # noqa: E402
from tests.engine.greedy import greedy_tokens  # noqa: E402
from engine.model import Transformer  # noqa: E402
from engine.moe import moe_experts_torch  # noqa: E402
from tests.engine.test_parity import SEQ_LEN, oracles_for, prompt, typical_diff  # noqa: E402
from engine.moe import swiglu  # noqa: E402
from engine.mxfp4 import dequantize  # noqa: E402
from tests.engine.test_triton_backend import _bf16_close, _experts, assert_same_weights  # noqa: E402

DEVICES = ["cpu"] + (["mps"] if torch.backends.mps.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["w8-e4k2-l2", "w16-e8k4-l4"])
def test_logits_match_both_oracles_on_both_layouts(name: str, device: str,
                                                   model_dir_for: Callable[[str], Path]) -> None:
    root = model_dir_for(name)
    tokens = prompt(SEQ_LEN[name])
    be = select(device, "mps").backend
    model = Transformer.from_checkpoint(root, backend=be)
    assert_same_weights(model, Transformer.from_checkpoint(root / "original", backend=be))
    ours = model(torch.tensor(tokens)).cpu()
    o = oracles_for(root, tokens)
    print(f"\n[mps on {device}, {name}] q75 ours-ref={typical_diff(ours, o.ref):.4f} tol={o.typical_tol:.4f}")
    o.assert_matches(ours)


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_tokens_match_the_cpu_path(tiny_model_dir: Path, device: str) -> None:
    cpu = Transformer.from_checkpoint(tiny_model_dir, backend=select("cpu", "cpu-reference").backend)
    mps = Transformer.from_checkpoint(tiny_model_dir, backend=select(device, "mps").backend)
    ids = torch.tensor(prompt(11, seed=4))
    assert greedy_tokens(mps, ids, 8) == greedy_tokens(cpu, ids, 8)


def _bf16_matmul_semantics(h, idx, w, ex) -> torch.Tensor:  # noqa: ANN001
    """mps's MoE written out: bf16 matmuls (fp32 sums, bf16 outputs), fp32 biases/swiglu/weighted sum."""
    out = torch.zeros(h.shape, dtype=torch.float64)
    for t in range(h.shape[0]):
        for k in range(idx.shape[1]):
            e = int(idx[t, k])
            w1 = dequantize(ex.mlp1_blocks[e], ex.mlp1_scales[e]).double()
            u = (w1 @ h[t].double()).to(torch.bfloat16).float() + ex.mlp1_bias[e].float()
            a = swiglu(u, 7.0).to(torch.bfloat16).double()
            w2 = dequantize(ex.mlp2_blocks[e], ex.mlp2_scales[e]).double()
            y = (w2 @ a).to(torch.bfloat16).float() + ex.mlp2_bias[e].float()
            out[t] += float(w[t, k]) * y.double()
    return out.float().bfloat16()


@pytest.mark.parametrize("t", [1, 7])
def test_moe_decodes_only_the_selected_experts(t: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = _experts(8, 64, 64, seed=t)
    g = torch.Generator().manual_seed(t)
    h = (torch.randn(t, 64, generator=g) * 2).bfloat16()
    idx = torch.stack([torch.randperm(8, generator=g)[:2] for _ in range(t)])
    if t > 1:
        idx[:, 0] = 1                                       # experts 1 and one of 2/5 only
        idx[:, 1] = torch.where(torch.arange(t) % 2 == 0, 2, 5)
    w = torch.softmax(torch.randn(t, 2, generator=g), -1)
    be = MpsBackend("cpu")
    decoded: list[int] = []
    real = be._decode
    monkeypatch.setattr(be, "_decode", lambda b, s: decoded.append(b.shape[0]) or real(b, s))
    got = be.moe(h, idx, w, ex, 7.0).float()
    _bf16_close(got, _bf16_matmul_semantics(h, idx, w, ex), identical=0.9)
    # and within a few bf16 steps of the fp32-output reference (the matmul outputs are rounded once more)
    want = moe_experts_torch(h, idx, w, ex, 7.0).float()
    assert ((got - want).abs() <= want.abs() * 2.0**-4 + 0.1).all(), (got - want).abs().max()
    selected = len(set(idx.reshape(-1).tolist()))
    if t == 1:
        assert decoded == [2, 2]                            # the two selected experts' mlp1, then mlp2
    else:
        assert decoded == [1] * (2 * selected)              # one decode per selected expert and matrix
