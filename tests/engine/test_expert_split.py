"""Experts on the CPU next to a small GPU: the split chosen from (fake) free memory and context, the
override, the memory budget of 20b at 8k, and the numerics of a split model with both halves on the CPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.backends import select
from engine.backends.split import gpu_bytes_needed, layer_expert_bytes, plan_expert_split
from engine.errors import OutOfMemory
from tests.engine.greedy import greedy_tokens
from engine.model import Transformer
from tests.engine.test_numerics import GPT_OSS_20B

GiB = 1 << 30
GPT_OSS_120B = replace(GPT_OSS_20B, num_hidden_layers=36, num_experts=128)


def test_20b_at_8k_fits_a_16_gb_gpu() -> None:
    need = gpu_bytes_needed(GPT_OSS_20B, 8192, GPT_OSS_20B.num_hidden_layers)
    assert need <= 16e9, need / 1e9
    assert plan_expert_split(GPT_OSS_20B, 8192, 16 * 10**9).cpu_layers == ()


@pytest.mark.parametrize(("cfg", "free_gib", "context"), [(GPT_OSS_20B, 8, 8192), (GPT_OSS_120B, 24, 8192),
                                                          (GPT_OSS_120B, 24, 65536), (GPT_OSS_20B, 12, 4096)])
def test_split_puts_as_many_layers_on_the_gpu_as_fit(cfg, free_gib: int, context: int) -> None:  # noqa: ANN001
    free = free_gib * GiB
    split = plan_expert_split(cfg, context, free)
    n_cpu = len(split.cpu_layers)
    n_gpu = cfg.num_hidden_layers - n_cpu
    assert 0 < n_cpu < cfg.num_hidden_layers
    assert split.cpu_layers == tuple(range(n_cpu)) and split.gpu_layers == tuple(range(n_cpu, cfg.num_hidden_layers))
    assert gpu_bytes_needed(cfg, context, n_gpu) <= free < gpu_bytes_needed(cfg, context, n_gpu + 1)
    assert split.describe() == f"experts of {n_cpu} of {cfg.num_hidden_layers} layers on the CPU"


def test_longer_context_moves_more_experts_to_the_cpu() -> None:
    short = plan_expert_split(GPT_OSS_120B, 8192, 24 * GiB)
    long = plan_expert_split(GPT_OSS_120B, 131072, 24 * GiB)
    assert len(long.cpu_layers) > len(short.cpu_layers)
    assert layer_expert_bytes(GPT_OSS_120B) == 4 * layer_expert_bytes(GPT_OSS_20B)          # 128 vs 32 experts


def test_override_and_what_cannot_fit() -> None:
    assert plan_expert_split(GPT_OSS_120B, 8192, 80 * GiB, experts_on_cpu=14).describe() == \
        "experts of 14 of 36 layers on the CPU"
    assert plan_expert_split(GPT_OSS_20B, 8192, None).cpu_layers == ()       # free memory unknown
    with pytest.raises(OutOfMemory, match="GPU has 2.0 GiB free"):
        plan_expert_split(GPT_OSS_20B, 8192, 2 * GiB)                      # not even without experts
    with pytest.raises(OutOfMemory):
        plan_expert_split(GPT_OSS_120B, 8192, 24 * GiB, experts_on_cpu=0)  # the override does not fit
    with pytest.raises(ValueError):
        plan_expert_split(GPT_OSS_20B, 8192, 24 * GiB, experts_on_cpu=25)



def test_split_model_on_the_cpu_computes_the_same(tiny_model_dir: Path) -> None:
    ref_be = select("cpu", "cpu-reference").backend
    whole = Transformer.from_checkpoint(tiny_model_dir, backend=ref_be)
    split = Transformer.from_checkpoint(tiny_model_dir, backend=ref_be, cpu_expert_layers=[0],
                                        cpu_backend=select("cpu", "cpu-reference").backend)
    assert split.cpu_expert_layers == (0,) and whole.cpu_expert_layers == ()
    tokens = torch.randint(0, 200_000, (24,), generator=torch.Generator().manual_seed(2))
    assert torch.equal(split(tokens), whole(tokens))                    # the same ops, routed through the split
    prompt = torch.arange(100, 111)
    assert greedy_tokens(split, prompt, 4) == greedy_tokens(whole, prompt, 4)
    # the other half on the best CPU kernels: still the same logits up to fp32 order
    native = Transformer.from_checkpoint(tiny_model_dir, backend=ref_be, cpu_expert_layers=[1])
    assert native.layers[1].expert_backend is not None
    d = (native(tokens) - whole(tokens)).abs().amax(-1)
    assert d.quantile(0.75) < 0.03
    with pytest.raises(ValueError):
        Transformer.from_checkpoint(tiny_model_dir, backend=ref_be, cpu_expert_layers=[5])
