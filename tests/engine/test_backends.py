"""Device selection and (on a GPU) the same model on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.backends import select_device
from engine.errors import DeviceError


def test_cpu_is_always_available() -> None:
    choice = select_device("cpu")
    assert choice.device == "cpu" and choice.fallback_reason is None


def test_auto_and_unavailable_devices_explain_the_fallback() -> None:
    auto = select_device("auto")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert auto.device == "cpu" and auto.fallback_reason
        for dev in ("cuda", "mps"):
            choice = select_device(dev)
            assert choice.device == "cpu"
            assert choice.fallback_reason and dev.upper() in choice.fallback_reason
    else:
        assert auto.device in ("cuda", "mps") and auto.fallback_reason is None


def test_unknown_device_is_a_user_error() -> None:
    with pytest.raises(DeviceError, match="Unknown device"):
        select_device("tpu")


@pytest.mark.gpu
def test_same_logits_and_greedy_tokens_on_cuda(tiny_model_dir: Path) -> None:
    from engine.generate import generate
    from engine.kv_cache import KVCache
    from engine.model import Transformer
    from engine.sampling import Sampler

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tokens = torch.randint(0, 200_000, (40,), generator=torch.Generator().manual_seed(3))
    cpu = Transformer.from_checkpoint(tiny_model_dir)
    gpu = Transformer.from_checkpoint(tiny_model_dir, device="cuda")
    a, b = cpu(tokens), gpu(tokens).cpu()
    d = (a - b).abs().amax(-1)
    print(f"\ncuda vs cpu: max {d.max():.4f} q75 {d.quantile(0.75):.4f}")
    assert d.quantile(0.75) < 0.06 and torch.isfinite(b).all()
    # cached decode on the GPU follows the GPU's own full pass
    cache = KVCache(gpu.config, 64, device="cuda")
    out = list(generate(gpu, cache, tokens[:10].tolist(), max_new_tokens=20, sampler=Sampler(0.0), stop_tokens=()))
    full = gpu(torch.tensor(tokens[:10].tolist() + out[:-1]))[9:].argmax(-1).cpu()
    assert full.tolist() == out
