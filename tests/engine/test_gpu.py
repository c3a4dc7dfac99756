"""Checks that need an NVIDIA GPU (make test-gpu / make bench-gpu): the cuda-triton model against both
oracles (or, where transformers is not installed, the reference oracle and the CPU path), greedy tokens
through the captured CUDA graph, no host synchronisation inside a decode step, experts split to the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch

from engine.backends import select
from engine.generate import generate
from engine.kv_cache import KVCache
from engine.model import Transformer
from engine.sampling import Sampler
from tests.engine.test_parity import SEQ_LEN, prompt, typical_diff

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]
HAVE_HF = importlib.util.find_spec("transformers") is not None
HAVE_REF = importlib.util.find_spec("gpt_oss") is not None


def _cuda(root: Path, **kw) -> Transformer:  # noqa: ANN003
    choice = select("cuda", "cuda-triton")
    assert choice.fallback_reason is None, choice.fallback_reason
    return Transformer.from_checkpoint(root, backend=choice.backend, **kw)


@pytest.mark.parametrize("name", list(SEQ_LEN))
def test_cuda_triton_logits_match_the_oracles(name: str, model_dir_for: Callable[[str], Path]) -> None:
    root = model_dir_for(name)
    tokens = prompt(SEQ_LEN[name])
    ours = _cuda(root)(torch.tensor(tokens)).cpu()
    ours_orig = _cuda(root / "original")(torch.tensor(tokens)).cpu()
    assert torch.equal(ours, ours_orig), "the two layouts must give bit-identical logits"
    cpu = Transformer.from_checkpoint(root, backend=select("cpu", "cpu-reference").backend)(torch.tensor(tokens))
    print(f"\n[cuda-triton {name}] q75 vs cpu-reference {typical_diff(ours, cpu):.4f}")
    if HAVE_HF and HAVE_REF:
        from tests.engine.test_parity import oracles_for

        o = oracles_for(root, tokens)
        print(f"  q75 vs ref {typical_diff(ours, o.ref):.4f} vs hf {typical_diff(ours, o.hf):.4f} tol {o.typical_tol:.4f}")
        o.assert_matches(ours)
    else:                               # the CPU path is checked against both oracles by make test
        assert typical_diff(ours, cpu) <= 0.03
        if HAVE_REF:
            from tests.engine.oracles import reference_logits

            ref = reference_logits(root, tokens)
            assert typical_diff(ours, ref) <= max(0.03, 1.5 * typical_diff(cpu, ref))


def test_greedy_tokens_through_the_cuda_graph(model_dir_for: Callable[[str], Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = model_dir_for("w128-e6k3-l3")
    ids = prompt(150, seed=7)                        # past the 128-token window
    cpu = Transformer.from_checkpoint(root, backend=select("cpu", "cpu-reference").backend)

    def run(model: Transformer, device: str) -> list[int]:
        cache = KVCache(model.config, 256, device=device)
        return list(generate(model, cache, ids, max_new_tokens=24, sampler=Sampler(0.0), stop_tokens=()))

    gpu = _cuda(root)
    graphed = run(gpu, "cuda")
    from engine.backends.cuda import CudaGraphDecoder

    monkeypatch.setenv("LANTERN_CUDA_GRAPHS", "0")
    eager = run(_cuda(root), "cuda")
    assert graphed == eager == run(cpu, "cpu")
    # the graph really was used: one decoder per (model, cache)
    cache = KVCache(gpu.config, 256, device="cuda")
    monkeypatch.setenv("LANTERN_CUDA_GRAPHS", "1")
    gpu(torch.tensor(ids[:5]), cache)
    gpu(torch.tensor(ids[5:6]), cache)
    assert isinstance(cache.decoders[id(gpu)], CudaGraphDecoder)


def test_decode_step_does_not_synchronise(model_dir_for: Callable[[str], Path]) -> None:
    model = _cuda(model_dir_for("w8-e4k2-l2"))
    cache = KVCache(model.config, 64, device="cuda")
    model(torch.tensor(prompt(10)), cache)
    step = torch.tensor([5], device="cuda")
    model(step, cache)                              # captures the graph (warm-up may sync)
    pos = torch.tensor([cache.length], device="cuda")
    model.decode_at(step, pos, cache)               # compiled, warm
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(step, cache)                          # graph replay
        model.decode_at(step, pos, cache)           # the eager fixed-shape step
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_experts_split_to_the_cpu(model_dir_for: Callable[[str], Path]) -> None:
    root = model_dir_for("w16-e8k4-l4")
    tokens = torch.tensor(prompt(40, seed=3))
    whole = _cuda(root)(tokens).cpu()
    split_model = _cuda(root, cpu_expert_layers=[0, 2])
    assert split_model.layers[0].experts.mlp1_blocks.device.type == "cpu"
    assert split_model.layers[1].experts.mlp1_blocks.device.type == "cuda"
    split = split_model(tokens).cpu()
    assert typical_diff(split, whole) <= 0.03
