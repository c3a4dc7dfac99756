"""Sampling: greedy, seeded determinism, temperature, nucleus."""

from __future__ import annotations

import pytest
import torch

from engine.sampling import Sampler


def _logits(seed: int = 0, vocab: int = 201088) -> torch.Tensor:
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_temperature_zero_is_argmax() -> None:
    for seed in range(3):
        logits = _logits(seed)
        assert Sampler(0.0)(logits) == int(logits.argmax())


def test_same_seed_same_tokens_and_different_seed_differs() -> None:
    logits = _logits(vocab=5000)
    a = [Sampler(1.0, 0.95, seed=7)(logits) for _ in range(1)]
    s1, s2, s3 = Sampler(1.0, 0.95, seed=7), Sampler(1.0, 0.95, seed=7), Sampler(1.0, 0.95, seed=8)
    run1 = [s1(logits) for _ in range(20)]
    run2 = [s2(logits) for _ in range(20)]
    run3 = [s3(logits) for _ in range(20)]
    assert run1 == run2 and run1[0] == a[0]
    assert run1 != run3
    assert len(set(run1)) > 1                      # it does sample, not argmax


def test_top_p_keeps_exactly_the_nucleus() -> None:
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    probs = torch.softmax(logits, -1)               # 0.636, 0.234, 0.086, 0.032, 0.012
    s = Sampler(1.0, top_p=0.8, seed=0)
    kept = s.probabilities(logits)
    assert (kept[:2] > 0).all() and (kept[2:] == 0).all()      # 0.636 < 0.8 <= 0.636 + 0.234
    assert kept[:2] == pytest.approx((probs[:2] / probs[:2].sum()).tolist(), rel=1e-6)
    draws = {s(logits) for _ in range(200)}
    assert draws == {0, 1}
    assert (Sampler(1.0, top_p=0.5).probabilities(logits) > 0).sum() == 1
    assert (Sampler(1.0, top_p=1.0).probabilities(logits) > 0).sum() == 5


def test_top_p_on_a_flat_distribution_beyond_the_fast_path() -> None:
    logits = torch.zeros(20000)                     # nucleus of 18000 tokens > the top-k prefilters
    kept = Sampler(1.0, top_p=0.9).probabilities(logits)
    assert int((kept > 0).sum()) == 18000


def test_temperature_sharpens() -> None:
    logits = torch.tensor([1.0, 0.0])
    cold = Sampler(0.25, seed=1)
    hot = Sampler(4.0, seed=1)
    n = 400
    assert sum(cold(logits) == 0 for _ in range(n)) > sum(hot(logits) == 0 for _ in range(n))
    assert cold.probabilities(logits)[0] == pytest.approx(torch.softmax(logits / 0.25, -1)[0].item())


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Sampler(-1.0)
    with pytest.raises(ValueError):
        Sampler(1.0, top_p=0.0)
