"""Experts on the CPU when the GPU is too small: how many layers' experts stay on the GPU. Torch-free.

Everything but the experts (embeddings, attention, router, norms, the unembedding), the KV cache and the
working memory of one prefill chunk must be on the GPU; the experts are ~90 % of the weights and are
placed layer by layer: the first `cpu_layers` layers keep theirs in the checkpoint's memory map and run
them on the CPU's native kernels (the idea of llama.cpp's --n-cpu-moe), the rest go to the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ModelConfig
from engine.errors import OutOfMemory
from engine.fit import GPU_HEADROOM_BYTES as HEADROOM_BYTES   # the one "will it fit" module's GPU slack
from engine.fit import enough_free
from engine.types import experts_split_text

GiB = 1 << 30
DEFAULT_PREFILL_CHUNK = 256         # engine.generate's prefill chunk


@dataclass(frozen=True, slots=True)
class ExpertSplit:
    num_layers: int
    cpu_layers: tuple[int, ...]     # layers whose experts run on the CPU
    gpu_bytes: int                  # estimated GPU memory with this split

    @property
    def gpu_layers(self) -> tuple[int, ...]:
        return tuple(n for n in range(self.num_layers) if n not in self.cpu_layers)

    def describe(self) -> str:
        return experts_split_text(len(self.cpu_layers), self.num_layers)


def layer_expert_bytes(cfg: ModelConfig) -> int:
    """One layer's experts as the GPU holds them: MXFP4 blocks + scales, bf16 biases."""
    biases = cfg.num_experts * (2 * cfg.intermediate_size + cfg.hidden_size) * 2
    return cfg.expert_weight_bytes() // cfg.num_hidden_layers + biases


def workspace_bytes(cfg: ModelConfig, chunk: int = DEFAULT_PREFILL_CHUNK) -> int:
    """Peak working memory of one forward call of `chunk` tokens on cuda-triton (upper estimate)."""
    d, k, i = cfg.hidden_size, cfg.experts_per_token, cfg.intermediate_size
    rows = chunk * k + cfg.num_experts * 16                                # grouped MoE rows (BM = 16)
    moe = rows * (i * 2 + 4) + chunk * k * d * 4 + chunk * k * 8 * 4      # act bf16, weighted y f32, routing
    hidden = 6 * chunk * d * 2 + chunk * cfg.qkv_width * 2 * 2            # residual, norms, qkv, rope copies
    attn = chunk * cfg.q_width * 2 * 2                                    # output + reshapes
    logits = cfg.vocab_size * 4 * 2                                       # last row only, + graph copy
    return moe + hidden + attn + logits


def gpu_bytes_needed(cfg: ModelConfig, context: int, gpu_expert_layers: int,
                     chunk: int = DEFAULT_PREFILL_CHUNK) -> int:
    """GPU memory of a model at `context` tokens with `gpu_expert_layers` layers' experts on the GPU."""
    dense = cfg.weight_bytes() - cfg.num_hidden_layers * layer_expert_bytes(cfg)
    return (dense + gpu_expert_layers * layer_expert_bytes(cfg) + cfg.kv_cache_bytes(context)
            + workspace_bytes(cfg, chunk) + HEADROOM_BYTES)


def plan_expert_split(cfg: ModelConfig, context: int, free_bytes: int | None, *,
                      experts_on_cpu: int | None = None, chunk: int = DEFAULT_PREFILL_CHUNK) -> ExpertSplit:
    """Which layers' experts run on the CPU.

    `experts_on_cpu` (0..layers) overrides the choice; None picks the fewest that fit `free_bytes` of GPU
    memory (None: unknown, all on the GPU). Raises OutOfMemory when even the model without any experts
    does not fit, or when the override does not.
    """
    n = cfg.num_hidden_layers
    per_layer = layer_expert_bytes(cfg)
    if experts_on_cpu is not None:
        if not 0 <= experts_on_cpu <= n:
            raise ValueError(f"experts_on_cpu must be between 0 and {n} (got {experts_on_cpu})")
        cpu = int(experts_on_cpu)
    elif free_bytes is None:
        cpu = 0
    else:
        base = gpu_bytes_needed(cfg, context, 0, chunk)
        fit = max(0, (free_bytes - base) // per_layer) if free_bytes >= base else -1
        cpu = n - min(n, fit) if fit >= 0 else n + 1
    needed = gpu_bytes_needed(cfg, context, n - min(cpu, n), chunk)
    if free_bytes is not None and (cpu > n or not enough_free(needed, free_bytes)):
        least = gpu_bytes_needed(cfg, context, 0, chunk)
        raise OutOfMemory(
            f"The GPU has {free_bytes / GiB:.1f} GiB free; this model needs about {needed / GiB:.1f} GiB there "
            f"with the chosen split (at least {least / GiB:.1f} GiB with every expert on the CPU) at a "
            f"{context:,}-token context. Choose a shorter context, move more experts to the CPU, or run on "
            "the CPU.", needed_bytes=needed, available_bytes=free_bytes)
    return ExpertSplit(n, tuple(range(cpu)), needed)
