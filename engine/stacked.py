"""Row-stacked matrices kept as separate tensors (no copy): the Hugging Face layout's q/k/v projections.

The original layout stores the fused attention input projection as one `attn.qkv` tensor; the HF layout
stores `q_proj`, `k_proj` and `v_proj` separately. Concatenating them at load copies 0.7 GB (gpt-oss-20b)
into anonymous memory; a `StackedRows` keeps the three memory-mapped views and behaves, for `linear`, as
their concatenation along dim 0. Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True, slots=True)
class StackedRows:
    """parts[i] [N_i, ...] (same trailing shape and dtype) standing for torch.cat(parts, dim=0)."""

    parts: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        assert len(self.parts) >= 1
        tail, dtype = self.parts[0].shape[1:], self.parts[0].dtype
        assert all(p.shape[1:] == tail and p.dtype == dtype for p in self.parts), [p.shape for p in self.parts]

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(int(p.shape[0]) for p in self.parts)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(self.rows), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.parts[0].dtype

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def cat(self) -> torch.Tensor:
        """The stacked tensor itself (a copy)."""
        import torch

        return torch.cat(self.parts, dim=0)
