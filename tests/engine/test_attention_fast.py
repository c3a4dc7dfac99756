"""Fast attention paths against the plain ones: banded sliding-window prefill, native one-query decode.

The banded path scores each query chunk only against the keys its window reaches; the masked path scores
every key and zeroes the invisible ones. In exact arithmetic they are equal; in fp32 only the summation
order of softmax denominators and probs @ v differs, so the bf16 outputs agree bit for bit except for rare
1-ulp rounding flips
(or fp32-noise-sized differences where the output nearly cancels to zero). A band that drops a single visible key must be caught.
"""

from __future__ import annotations

import pytest
import torch

import engine.backends.reference as model
from engine import kernels
from engine.model import attention, attention_one


def _masked(monkeypatch: pytest.MonkeyPatch, *args: object) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(model, "_consecutive", lambda pos: False)      # forces the unbanded path
        return attention(*args)


def _case(t: int, past: int, hkv: int = 2, g: int = 4, d: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = past + t
    q = torch.randn(t, hkv, g, d, generator=gen).bfloat16()
    k = (torch.randn(s, hkv, d, generator=gen) * 2).bfloat16()
    v = torch.randn(s, hkv, d, generator=gen).bfloat16()
    sinks = torch.randn(hkv * g, generator=gen)
    return q, k, v, sinks, torch.arange(past, past + t), torch.arange(s)


@pytest.mark.parametrize(("t", "past", "window"),
                         [(600, 0, 128), (257, 300, 128), (45, 3, 8), (600, 0, None), (300, 40, None)])
def test_banded_equals_masked(monkeypatch: pytest.MonkeyPatch, t: int, past: int, window: int | None) -> None:
    q, k, v, sinks, qp, kp = _case(t, past)
    banded = attention(q, k, v, sinks, qp, kp, window, 0.125).float()
    masked = _masked(monkeypatch, q, k, v, sinks, qp, kp, window, 0.125).float()
    # one bf16 ulp of the value, or fp32 cancellation noise where the sum nearly cancels (|v| ~ 1)
    ulp = masked.abs() * 2.0**-7 + 1e-5
    assert ((banded - masked).abs() <= ulp).all()
    assert (banded == masked).float().mean().item() >= 0.995


def test_causal_chunks_skip_no_visible_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full layers: the tolerance catches every query missing one visible key (its own)."""
    q, k, v, sinks, qp, kp = _case(300, 0)
    masked = _masked(monkeypatch, q, k, v, sinks, qp, kp, None, 0.125).float()
    short = attention(q, k, v, sinks, qp, kp + 1, None, 0.125).float()   # every query loses its own key
    ulp = masked.abs() * 2.0**-7 + 1e-5
    assert not ((short - masked).abs() <= ulp).all()


def test_band_dropping_a_visible_key_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, sinks, qp, kp = _case(300, 0)
    masked = _masked(monkeypatch, q, k, v, sinks, qp, kp, 128, 0.125).float()
    narrow = attention(q, k, v, sinks, qp, kp, 127, 0.125).float()        # one key short on every query
    ulp = masked.abs() * 2.0**-7 + 1e-5
    assert not ((narrow - masked).abs() <= ulp).all()


@pytest.mark.skipif(not kernels.available(), reason="native kernels not built")
@pytest.mark.parametrize("path", ["avx512", "avx2", "neon"])
@pytest.mark.parametrize(("s", "g", "d"), [(1, 8, 64), (17, 8, 64), (300, 8, 64), (45, 3, 32), (9, 16, 16)])
def test_native_decode_attention_matches_torch(monkeypatch: pytest.MonkeyPatch, path: str, s: int, g: int,
                                               d: int) -> None:
    """The native one-query kernel (decode) against attention_one's torch ops: same math, fp32 order aside."""
    if not kernels.path_available(path):
        pytest.skip(f"CPU cannot run the {path} kernels")
    q, k, v, sinks, _, _ = _case(1, s - 1, hkv=8, g=g, d=d, seed=s)
    ref = attention_one(q, k, v, sinks, 0.125).float()                  # engine.model's: pure torch
    got = kernels.attention_decode(q[0], k, v, sinks, 0.125, path=path)
    assert got is not None and got.shape == ref.shape
    got = got.float()
    assert ((got - ref).abs() <= ref.abs() * 2.0**-7 + 1e-5).all()
    assert (got == ref).float().mean().item() >= 0.99
    # and it is not trivially equal: dropping the sink changes it
    no_sink = kernels.attention_decode(q[0], k, v, torch.full_like(sinks, -1e30), 0.125, path=path).float()
    assert not torch.equal(no_sink, got)


@pytest.mark.skipif(not kernels.available(), reason="native kernels not built")
def test_native_decode_attention_softmax_extremes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores spread over hundreds (exp underflows to 0 below -87.3) and a dominant sink, on every path."""
    q, k, v, sinks, _, _ = _case(1, 63, hkv=2, g=4, d=64, seed=3)
    k = (k.float() * 40).bfloat16()                     # scores in the hundreds: most probs underflow
    sinks = sinks.clone()
    sinks[1] = 500.0                                    # this head attends (almost) only to its sink
    ref = attention_one(q, k, v, sinks, 0.125).float()
    for path in ("avx512", "avx2"):
        if not kernels.path_available(path):
            continue
        got = kernels.attention_decode(q[0], k, v, sinks, 0.125, path=path)
        assert got is not None
        got = got.float()
        assert torch.isfinite(got).all()
        assert ((got - ref).abs() <= ref.abs() * 2.0**-7 + 1e-5).all(), path


@pytest.mark.skipif(not kernels.available(), reason="native kernels not built")
def test_decode_attention_path_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """LANTERN_CPU_KERNELS picks what path="auto" runs: scalar has no attention kernel (torch is used)."""
    q, k, v, sinks, _, _ = _case(1, 20, hkv=2, g=4)
    monkeypatch.setenv(kernels.PATH_ENV, "scalar")
    assert kernels.attention_decode(q[0], k, v, sinks, 0.125) is None
    if kernels.path_available("avx2"):
        monkeypatch.setenv(kernels.PATH_ENV, "avx2")
        assert kernels.status().backend == "cpu-avx2"
        got = kernels.attention_decode(q[0], k, v, sinks, 0.125)
        assert got is not None and torch.equal(got, kernels.attention_decode(q[0], k, v, sinks, 0.125, path="avx2"))
