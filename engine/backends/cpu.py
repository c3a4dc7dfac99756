"""CPU backends: the native kernels (`engine.kernels`: AVX-512 BF16, AVX2, NEON or scalar) and pure torch.

On the CPU the weights are never copied: every tensor stays a view of the checkpoint's memory map, the HF
layout's q/k/v projections stay three views (`StackedRows`), and embedding rows are read from the file
with pread (`FileRows`) so the 1.16 GB table does not count as resident memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from engine import kernels
from engine.backends import reference as ref
from engine.backends.base import Backend
from engine.file_rows import FileRows
from engine.moe import PackedExperts
from engine.stacked import StackedRows

if TYPE_CHECKING:  # pragma: no cover
    from engine.checkpoint import Checkpoint

SERIAL_TORCH_TOKENS = 8  # forward calls of at most this many tokens run torch's own ops single-threaded

class CpuTorchBackend(Backend):
    """`cpu-reference`: the pure-torch operations on the CPU, weights as views of the file mapping."""

    name = "cpu-reference"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        assert self.device.type == "cpu", self.device

    def place_rows(self, parts: list[torch.Tensor]) -> torch.Tensor | StackedRows:
        """HF q/k/v_proj stay three mmap views: no 0.7 GB concatenated copy at 20b."""
        return parts[0] if len(parts) == 1 else StackedRows(tuple(parts))

    def place_experts(self, ex: PackedExperts) -> PackedExperts:
        return ex

    def embedding_rows(self, ckpt: Checkpoint, table: torch.Tensor) -> FileRows | None:
        where = ckpt.byte_range("embedding.weight")
        if where is None or not FileRows.supported():
            return None
        path, offset, _ = where
        return FileRows(path, offset, table.shape[0], table.shape[1], table.dtype)


class CpuNativeBackend(CpuTorchBackend):
    """`cpu-avx512` / `cpu-avx2` / `cpu-neon` / `cpu-scalar`: the native kernels for every hot path.

    `path="auto"` runs what `engine.kernels` picks (the CPU's best, or LANTERN_CPU_KERNELS); a named path
    is passed to every kernel call. The ctypes pointer arrays of stacked weights (HF q/k/v) are built once
    per weight and kept here, for the lifetime of the model this backend serves.
    """

    def __init__(self, path: kernels.KernelPath = "auto", device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.path: kernels.KernelPath = path
        code = path if path != "auto" else kernels.status().backend.removeprefix("cpu-")
        self.name = f"cpu-{code}"
        self._arg_cache: dict[Any, Any] = {}

    def rms_norm(self, x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and scale.dtype == torch.float32:
            return kernels.rms_norm(x, scale, eps)
        return ref.rms_norm(x, scale, eps)

    def linear(self, x: torch.Tensor, weight: torch.Tensor | StackedRows,
               bias: torch.Tensor | StackedRows | None) -> torch.Tensor:
        return kernels.linear_bf16(x, weight, bias, path=self.path, arg_cache=self._arg_cache)

    def logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return kernels.linear_bf16(x, weight, None, out_dtype=torch.float32, path=self.path)

    def attention_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor,
                         sm_scale: float, *, q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
                         window: int | None = None) -> torch.Tensor:
        if k_pos is None and sinks.dtype == torch.float32 and sinks.is_contiguous():
            o = kernels.attention_decode(q[0], k, v, sinks, sm_scale, path=self.path)
            if o is not None:
                return o
        return super().attention_decode(q, k, v, sinks, sm_scale, q_pos=q_pos, k_pos=k_pos, window=window)

    def moe(self, h: torch.Tensor, expert_idx: torch.Tensor, expert_w: torch.Tensor, experts: PackedExperts,
            swiglu_limit: float) -> torch.Tensor:
        return kernels.moe_experts(h, expert_idx, expert_w, experts, swiglu_limit, path=self.path)

    @contextlib.contextmanager
    def step(self, n_tokens: int) -> Iterator[None]:
        # Decode-sized steps: torch's own ops (norms, rope, attention on a few rows) run single-threaded
        # while the native kernels keep their threads; a fork-join region per tiny op costs more than it
        # saves, and on a busy machine each one can wait a scheduler time slice for a preempted thread.
        with kernels.serial_torch(n_tokens <= SERIAL_TORCH_TOKENS):
            yield
