"""CPU token embedding: rows read from the file with pread equal the mapped table's rows, and reading them
leaves the 1.16 GB (at 20b) table out of the process's resident memory."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.file_rows import FileRows
from engine.model import Transformer

pytestmark = pytest.mark.skipif(not FileRows.supported(), reason="no os.preadv on this platform")


def _mapped_bytes(t: torch.Tensor) -> int:
    """Bytes of `t`'s pages present in this process's page tables (/proc/self/pagemap bit 63)."""
    first, last = t.data_ptr() // 4096, (t.data_ptr() + t.nbytes - 1) // 4096
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        data = f.read((last - first + 1) * 8)
    return 4096 * sum(1 for (v,) in struct.iter_unpack("<Q", data) if v >> 63)


@pytest.mark.parametrize("layout", ["huggingface", "original"])
def test_rows_from_the_file_equal_the_mapped_rows(tiny_model_dir: Path, layout: str) -> None:
    model = Transformer.from_checkpoint(tiny_model_dir if layout == "huggingface" else tiny_model_dir / "original")
    assert model.embedding_rows is not None
    tokens = torch.tensor([0, 5, 5, model.config.vocab_size - 1, 1234, 7])
    got = model.embedding_rows.lookup(tokens)
    assert got.dtype == model.embedding.dtype and got.shape == (6, model.config.hidden_size)
    assert torch.equal(got, F.embedding(tokens, model.embedding))
    assert not torch.equal(got[0], got[1])
    assert model.embedding_rows.lookup(torch.tensor([], dtype=torch.long)).shape == (0, model.config.hidden_size)
    with pytest.raises(IndexError):
        model.embedding_rows.lookup(torch.tensor([model.config.vocab_size]))


def test_forward_is_the_same_with_mapped_rows(tiny_model_dir: Path) -> None:
    model = Transformer.from_checkpoint(tiny_model_dir)
    tokens = torch.randint(0, model.config.vocab_size, (9,), generator=torch.Generator().manual_seed(0))
    with_file = model.forward(tokens)
    model.embedding_rows = None
    assert torch.equal(model.forward(tokens), with_file)


@pytest.mark.skipif(not Path("/proc/self/pagemap").exists(), reason="needs Linux /proc")
def test_looking_rows_up_maps_none_of_the_table(tiny_model_dir: Path) -> None:
    model = Transformer.from_checkpoint(tiny_model_dir)
    tokens = torch.randint(0, model.config.vocab_size, (2000,), generator=torch.Generator().manual_seed(1))
    model.forward(tokens[:64])
    # only pages shared with neighbouring tensors can be mapped (their faults map around them)
    edges = _mapped_bytes(model.embedding)
    assert edges <= 2 * (2 << 20) + (256 << 10)
    model.embedding_rows.lookup(tokens)
    assert _mapped_bytes(model.embedding) == edges
    F.embedding(tokens, model.embedding)             # the mapped lookup does map it: the probe can see it
    assert _mapped_bytes(model.embedding) > edges + model.embedding.nbytes // 4
