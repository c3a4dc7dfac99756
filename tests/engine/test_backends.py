"""Backend selection (engine.backends.select), the status-bar label, and (on a GPU) the model on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import kernels
from engine.backends import REGISTRY, names, select, select_device
from engine.errors import DeviceError
from engine.types import ModelInfo, backend_label

NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()


def test_cpu_is_always_available_and_not_a_fallback() -> None:
    choice = select("cpu")
    assert choice.device == "cpu" and choice.fallback_reason is None
    assert choice.name == (kernels.status().backend if kernels.available() else "cpu-reference")
    assert select_device("cpu").backend == choice.name


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_a_machine_without_a_gpu_is_not_a_fallback_but_asking_for_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.backends as backends

    monkeypatch.setattr(backends, "_gpu_present_but_unusable", lambda: None)
    auto = select("auto")
    assert auto.device == "cpu" and auto.fallback_reason is None
    for dev in ("cuda", "mps"):
        choice = select(dev)
        assert choice.device == "cpu"
        assert choice.fallback_reason and dev.upper() in choice.fallback_reason
    asked = select("auto", "cuda-triton")                     # a GPU backend, no GPU: a fallback
    assert asked.device == "cpu" and "cuda-triton requested" in asked.fallback_reason
    # a GPU that is there but unusable makes "auto" a fallback too
    monkeypatch.setattr(backends, "_gpu_present_but_unusable", lambda: "an NVIDIA GPU is present but X")
    assert "NVIDIA GPU is present" in select("auto").fallback_reason


def test_every_registry_name_selects_itself_or_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANTERN_BACKEND", raising=False)
    for name, spec in REGISTRY.items():
        for dev in spec.devices:
            choice = select(dev, name)
            if choice.fallback_reason is None:
                assert choice.name == name and choice.device == dev, (name, dev)
            else:
                assert choice.fallback_reason.startswith(f"{name} requested but"), choice.fallback_reason
    assert names()[0] == "auto" and set(names()[1:]) == set(REGISTRY)


def test_environment_names_the_backend_and_the_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANTERN_BACKEND", "cpu-reference")
    assert select("cpu").name == "cpu-reference"
    assert select("cpu", "mps").name == "mps"
    monkeypatch.setenv("LANTERN_BACKEND", "nonsense")
    with pytest.raises(DeviceError, match="Unknown backend"):
        select("cpu")


def test_unknown_names_and_impossible_pairs_are_user_errors() -> None:
    with pytest.raises(DeviceError, match="Unknown device"):
        select("tpu")
    with pytest.raises(DeviceError, match="Unknown backend"):
        select("cpu", "vulkan")
    with pytest.raises(DeviceError, match="runs on"):
        select("mps", "cpu-reference")


def _info(device: str, backend: str, reason: str | None = None, cpu_layers: int = 0, layers: int = 36) -> ModelInfo:
    return ModelInfo("m", Path("."), "original", layers, 128, 4, 0, 0, 0, 0, 0, device=device, backend=backend,
                     fallback_reason=reason, cpu_expert_layers=cpu_layers)


def test_status_label_words() -> None:
    assert backend_label(_info("cpu", "cpu-avx2")) == "CPU · AVX2"
    assert backend_label(_info("cuda", "cuda-triton")) == "CUDA · Triton"
    assert backend_label(_info("cpu", "cpu-reference")) == "CPU · pure torch"
    assert backend_label(_info("cuda", "cuda-triton", cpu_layers=14)) == \
        "CUDA · Triton · experts of 14 of 36 layers on the CPU"
    fell = backend_label(_info("cpu", "cpu-avx512", "CUDA requested but no driver; running on the CPU"))
    assert fell == "CPU · AVX-512 (fell back: CUDA requested but no driver; running on the CPU)"
    assert _info("mps", "mps").backend_label == "Apple GPU · Metal"


def test_label_module_stays_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys, engine.types as t; "
            "print(t.backend_label(t.ModelInfo('m', '.', 'original', 2, 4, 2, 0, 0, 0, 0, 0, 'cpu', 'cpu-avx2'))); "
            "assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "CPU · AVX2", out.stderr


def test_engine_reports_the_backend_it_runs(tiny_model_dir: Path) -> None:
    from engine.api import Engine

    eng = Engine.load(tiny_model_dir, device="cpu", max_context=64, backend="cpu-reference", experts_on_cpu=1)
    try:
        assert eng.model.backend.name == eng.info.backend == "cpu-reference"
        assert eng.info.fallback_reason is None and eng.info.cpu_expert_layers == 0   # no GPU: no split
        assert eng.info.backend_label == "CPU · pure torch"
    finally:
        eng.close()


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
    assert gpu.backend.name == "cuda-triton"
    a, b = cpu(tokens), gpu(tokens).cpu()
    d = (a - b).abs().amax(-1)
    print(f"\ncuda vs cpu: max {d.max():.4f} q75 {d.quantile(0.75):.4f}")
    assert d.quantile(0.75) < 0.06 and torch.isfinite(b).all()
    # cached decode on the GPU (CUDA graph) follows the GPU's own full pass
    cache = KVCache(gpu.config, 64, device="cuda")
    out = list(generate(gpu, cache, tokens[:10].tolist(), max_new_tokens=20, sampler=Sampler(0.0), stop_tokens=()))
    full = gpu(torch.tensor(tokens[:10].tolist() + out[:-1]))[9:].argmax(-1).cpu()
    assert full.tolist() == out
