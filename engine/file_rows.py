"""Rows of a 2-D tensor read from its file with pread: the token-embedding lookup on CPU.

A forward pass needs one embedding row per token (5.6 KiB at gpt-oss widths) out of a 1.16 GB table.
Through the memory map each touched row pulls whole page-cache folios (up to 2 MiB on recent kernels)
into the process's resident set, so after a few thousand distinct tokens most of the table counts as
resident memory. Reading the rows with pread copies only what is used and keeps the table out of RSS.
Where pread is missing (Windows) the caller keeps using the mapped tensor.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class FileRows:
    """Rows [R, C] of one tensor stored row-major at `offset` in `path`; `lookup` = F.embedding on it."""

    def __init__(self, path: Path, offset: int, rows: int, cols: int, dtype: torch.dtype) -> None:
        self.path = path
        self.offset = offset
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
        self.row_bytes = cols * dtype.itemsize
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - lives as long as the model

    @staticmethod
    def supported() -> bool:
        return hasattr(os, "preadv")

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [T] int64 -> [T, C] rows (a fresh tensor), like F.embedding(tokens, table)."""
        ids = tokens.tolist()
        if not ids:
            return torch.empty((0, self.cols), dtype=self.dtype)
        raw = bytearray(len(ids) * self.row_bytes)
        buf = memoryview(raw)
        fd, rb = self._file.fileno(), self.row_bytes
        for i, tok in enumerate(ids):
            if not 0 <= tok < self.rows:
                raise IndexError(f"token id {tok} is outside the vocabulary (0..{self.rows - 1})")
            got = os.preadv(fd, [buf[i * rb:(i + 1) * rb]], self.offset + tok * rb)
            if got != rb:
                raise OSError(f"short read of the embedding row for token {tok} from {self.path}")
        return torch.frombuffer(raw, dtype=self.dtype).view(len(ids), self.cols)  # shares `raw` (kept alive)

    def close(self) -> None:
        self._file.close()
