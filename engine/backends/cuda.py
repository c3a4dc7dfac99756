"""CUDA backends: `cuda-triton` (Triton kernels where torch is not enough) and `cuda-torch` (pure torch).

cuda-triton: the experts are read straight from the packed MXFP4 blocks and scales (a matrix-vector
kernel per selected expert for decode, a grouped GEMM over token-slot pairs sorted by expert for prefill);
attention with sinks is a flash kernel (causal, banded to the 128-token window on sliding layers) for
prefill and a split-key kernel against the cache for decode; the router's top-k and softmax run on the
device. Dense projections and the unembedding are cuBLAS (torch) with fp32 accumulation.

The decode step has no host read except the sampled token: positions are device tensors, the cache's
`update_at` returns fixed-shape buffers and the masks are computed on the device, so the whole step is
captured once in a CUDA graph per (model, cache) and replayed for every token (LANTERN_CUDA_GRAPHS=0
turns that off). With `--device cpu` the same kernels run under Triton's interpreter (tests).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Callable

import torch

from engine.backends import reference as ref
from engine.backends.base import Backend
from engine.moe import PackedExperts

if TYPE_CHECKING:  # pragma: no cover
    from engine.kv_cache import KVCache
    from engine.model import Transformer

log = logging.getLogger(__name__)

GRAPHS_ENV = "LANTERN_CUDA_GRAPHS"   # 0: run decode steps eagerly (no CUDA graph)


class CudaTorchBackend(Backend):
    """`cuda-torch`: the pure-torch reference operations on an NVIDIA GPU (for comparison and fallback)."""

    name = "cuda-torch"


class CudaTritonBackend(Backend):
    """`cuda-triton`: Triton kernels for the experts and attention, torch for the rest."""

    name = "cuda-triton"

    def __init__(self, device: torch.device | str = "cuda") -> None:
        super().__init__(device)
        from engine.backends import triton_kernels

        problem = triton_kernels.problem(self.device.type)
        if problem is not None:
            raise RuntimeError(problem)
        self.tk = triton_kernels

    def rms_norm(self, x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and scale.dtype == torch.float32:
            return self.tk.rms_norm(x, scale, eps)
        return ref.rms_norm(x, scale, eps)

    def rope(self, qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        if qk.dtype == torch.bfloat16 and cos.dtype == torch.bfloat16 and qk.stride(2) == 1 \
                and qk.stride(1) == qk.shape[2]:
            return self.tk.rope(qk, cos, sin)
        return super().rope(qk, cos, sin)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                  q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None, sm_scale: float, *,
                  q_start: int | None = None, k_start: int | None = None) -> torch.Tensor:
        if q_start is None or k_start is None:        # positions only as tensors: read their starts once
            q_start, k_start = int(q_pos[0]), int(k_pos[0])
        return self.tk.attention_prefill(q, k, v, sinks, q_start, k_start, window, sm_scale)

    def attention_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                         sm_scale: float, *, q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
                         window: int | None = None) -> torch.Tensor:
        return self.tk.attention_decode(q, k, v, sinks, sm_scale, q_pos, k_pos, window)

    def moe(self, h: torch.Tensor, expert_idx: torch.Tensor, expert_w: torch.Tensor, experts: PackedExperts,
            swiglu_limit: float) -> torch.Tensor:
        if h.shape[0] == 1:
            return self.tk.moe_decode(h, expert_idx, expert_w, experts, swiglu_limit)
        return self.tk.moe_grouped(h, expert_idx, expert_w, experts, swiglu_limit)

    def logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return ref.logits_fp32(x, weight)

    def decoder(self, model: Transformer, cache: KVCache) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if self.device.type != "cuda" or os.environ.get(GRAPHS_ENV, "1") in ("0", "false", "no"):
            return None
        if model.cpu_expert_layers:                  # experts on the CPU: the step crosses to the host
            return None
        return CudaGraphDecoder(model, cache)


class CudaGraphDecoder:
    """The one-token step of one (model, cache), captured in a CUDA graph on first use and replayed.

    The graph reads its token and position from two device buffers, so a replay costs one launch; the
    host only writes those (no read) and advances `cache.length`."""

    def __init__(self, model: Transformer, cache: KVCache) -> None:
        self.model = model
        self.cache = cache
        dev = model.device
        self.token = torch.zeros(1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None

    def _capture(self) -> None:
        # Warm up on a side stream (Triton compiles its kernels, the allocator settles), then capture. The
        # warm-up writes this step's own K/V slot, which the first replay overwrites with the same values.
        side = torch.cuda.Stream(self.model.device)
        side.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.model.decode_at(self.token, self.pos, self.cache)
        torch.cuda.current_stream(self.model.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.model.decode_at(self.token, self.pos, self.cache)
        self.graph = graph
        log.info("captured the decode step in a CUDA graph")

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.token.copy_(tokens.reshape(1))
        self.pos.fill_(self.cache.length)
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.logits is not None
        self.graph.replay()
        self.cache.length += 1
        return self.logits.clone()                   # [1, V] f32; the graph's buffer is reused next step
