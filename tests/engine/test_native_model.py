"""The whole forward pass with the native CPU kernels against the same model on the pure-torch path.

Both paths compute the same math (bf16 inputs, fp32 sums); only fp32 summation order differs, so logits
must agree to a few bf16 steps and greedy decoding (with the KV cache) must pick the same tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import kernels
from engine.backends import select
from tests.engine.greedy import greedy_tokens
from engine.model import Transformer

pytestmark = pytest.mark.skipif(not kernels.available(), reason=f"native kernels not built: {kernels.status().reason}")


def _model(root: Path, native: bool) -> Transformer:
    """The model on the CPU's native kernels (LANTERN_CPU_KERNELS honoured) or on pure torch."""
    return Transformer.from_checkpoint(root, backend=select("cpu", None if native else "cpu-reference").backend)



# None: the path LANTERN_CPU_KERNELS picks as it is set (unset: the CPU's best); `make test` runs these again
# with each other path this CPU can run forced (the auto_path marker).
PATHS = [pytest.param(None, marks=pytest.mark.auto_path), "avx2"]


def _force_path(monkeypatch: pytest.MonkeyPatch, path: str | None) -> None:
    """LANTERN_CPU_KERNELS=path for the whole model (None: leave it as it is); skips if the CPU can't run it."""
    if path is None:
        return
    if not kernels.path_available(path):
        pytest.skip(f"CPU cannot run the {path} kernels")
    monkeypatch.setenv(kernels.PATH_ENV, path)
    assert kernels.status().backend == f"cpu-{path}"


@pytest.mark.parametrize("path", PATHS)
def test_native_forward_matches_torch_path(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           path: str | None) -> None:
    _force_path(monkeypatch, path)
    model = _model(tiny_model_dir, True)
    tokens = torch.randint(0, model.config.vocab_size, (40,), generator=torch.Generator().manual_seed(0))
    ref = _model(tiny_model_dir, False)(tokens)
    got = model(tokens)
    scale = ref.abs().max().item()
    # The torch path refines only each row's top-64 logits to exact fp32 (the tail is a bf16 GEMM);
    # the native path is exact fp32 everywhere. So: tight on the top 64, bf16 rounding on the rest.
    top = ref.topk(64, dim=-1).indices                            # [T, 64]
    per_pos = (got.gather(1, top) - ref.gather(1, top)).abs().amax(dim=-1)   # [T]
    assert per_pos.median().item() <= 0.002 * scale, per_pos
    tail_ok = ((got - ref).abs() <= ref.abs() * 2.0**-8 + 0.002 * scale).all(dim=-1)   # [T]
    assert tail_ok.float().mean().item() >= 0.9, tail_ok
    top2 = ref.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.02 * scale             # positions with a clear winner
    assert clear.sum() > 10
    assert torch.equal(got.argmax(-1)[clear], ref.argmax(-1)[clear])


@pytest.mark.parametrize("path", PATHS)
def test_native_greedy_tokens_match_torch_path(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               path: str | None) -> None:
    _force_path(monkeypatch, path)
    model = _model(tiny_model_dir, True)
    prompt = torch.randint(0, model.config.vocab_size, (12,), generator=torch.Generator().manual_seed(1))
    ref = greedy_tokens(_model(tiny_model_dir, False), prompt, 12, capacity=256)
    got = greedy_tokens(model, prompt, 12, capacity=256)
    assert got == ref


@pytest.mark.parametrize("t", [1, 40])
def test_native_rms_norm_matches_torch(monkeypatch: pytest.MonkeyPatch, t: int) -> None:
    """Native RMSNorm: the same two fp32 products and one rounding; only the sum of squares' order differs."""
    from engine.model import rms_norm

    gen = torch.Generator().manual_seed(t)
    x = (torch.randn(t, 2880, generator=gen) * 3).bfloat16()
    scale = torch.rand(2880, generator=gen) + 0.5
    got = kernels.rms_norm(x, scale, 1e-5)
    ref = rms_norm(x, scale, 1e-5)                                      # engine.model.rms_norm: pure torch
    assert ((got.float() - ref.float()).abs() <= ref.float().abs() * 2.0**-7).all()
    assert (got == ref).float().mean().item() >= 0.99
    assert not torch.equal(kernels.rms_norm(x, scale * 1.01, 1e-5), got)   # the scale is really applied


@pytest.mark.parametrize("path", ["avx512", "avx2", "neon", "scalar"])
@pytest.mark.parametrize(("T", "D", "N"), [(1, 2880, 200), (1, 72, 33), (7, 2880, 70), (20, 136, 9)])
def test_native_linear_matches_torch(path: str, T: int, D: int, N: int) -> None:
    """linear_bf16 per path: fp32 output against float64 sums of the exact products; bf16 output with a bias
    against F.linear's fp32-sum-then-round (one bf16 step apart at most). D = 72, 136: a partial 16-block."""
    if not kernels.path_available(path):
        pytest.skip(f"CPU cannot run the {path} kernels")
    gen = torch.Generator().manual_seed(T * 7 + D + N)
    x = torch.randn(T, D, generator=gen).bfloat16()
    w = (torch.randn(N, D, generator=gen) * 0.05).bfloat16()
    b = torch.randn(N, generator=gen).bfloat16()
    exact = x.double() @ w.double().T                                    # [T, N]
    got = kernels.linear_bf16(x, w, None, out_dtype=torch.float32, path=path)
    bound = (x.double().abs() @ w.double().abs().T) * D * 2.0**-24       # fp32 summation error bound
    assert ((got.double() - exact).abs() <= bound).all()
    assert not torch.equal(got, kernels.linear_bf16(x, w.roll(1, dims=1), None, out_dtype=torch.float32, path=path))
    got16 = kernels.linear_bf16(x, w, b, path=path).float()
    ref16 = torch.nn.functional.linear(x.float(), w.float(), b.float())
    assert ((got16 - ref16).abs() <= ref16.abs() * 2.0**-7 + 1e-6).all()
    assert (got16 == ref16.bfloat16().float()).float().mean().item() >= 0.95
