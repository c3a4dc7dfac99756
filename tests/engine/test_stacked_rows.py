"""The HF layout's q/k/v_proj stay three memory-mapped tensors on CPU (no 0.7 GB fused copy at 20b), and
every path computes with them exactly what it computes with their concatenation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import kernels
from engine.checkpoint import open_checkpoint
from engine.model import Transformer, linear
from engine.stacked import StackedRows

from tests.engine.test_checkpoint import _mapping_of


def _parts(gen: torch.Generator, rows: tuple[int, ...], d: int) -> tuple[StackedRows, StackedRows, torch.Tensor,
                                                                          torch.Tensor]:
    ws = tuple(torch.randn(n, d, generator=gen).bfloat16() for n in rows)
    bs = tuple(torch.randn(n, generator=gen).bfloat16() for n in rows)
    return StackedRows(ws), StackedRows(bs), torch.cat(ws), torch.cat(bs)


@pytest.mark.skipif(not kernels.available(), reason="native kernels not built")
@pytest.mark.parametrize("path", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("t", [1, 6])
def test_native_stacked_linear_is_the_concatenated_one_bit_for_bit(path: str, t: int) -> None:
    if not kernels.path_available(path):
        pytest.skip(f"CPU cannot run the {path} kernels")
    gen = torch.Generator().manual_seed(t)
    w, b, w_cat, b_cat = _parts(gen, (70, 16, 16), 96)
    x = torch.randn(t, 96, generator=gen).bfloat16()
    want = kernels.linear_bf16(x, w_cat, b_cat, path=path)
    assert torch.equal(kernels.linear_bf16(x, w, b, path=path), want)
    assert torch.equal(kernels.linear_bf16(x, w, b_cat, path=path), want)       # a plain bias is split
    f32 = kernels.linear_bf16(x, w, None, out_dtype=torch.float32, path=path)
    assert torch.equal(f32, kernels.linear_bf16(x, w_cat, None, out_dtype=torch.float32, path=path))
    # the parts really are used in order: swapping two of them moves the output columns
    swapped = StackedRows((w.parts[0], w.parts[2], w.parts[1]))
    assert not torch.equal(kernels.linear_bf16(x, swapped, None, path=path), kernels.linear_bf16(x, w, None, path=path))


def test_torch_stacked_linear_matches_f_linear() -> None:
    gen = torch.Generator().manual_seed(3)
    w, b, w_cat, b_cat = _parts(gen, (64, 8, 8), 64)
    x = torch.randn(4, 64, generator=gen).bfloat16()
    want = F.linear(x, w_cat, b_cat)
    for bias in (b, b_cat):
        got = linear(x, w, bias)
        assert got.shape == want.shape
        assert ((got.float() - want.float()).abs() <= want.float().abs() * 2.0**-7 + 1e-3).all()


def test_hf_layout_qkv_pieces_live_in_the_file_mapping(tiny_model_dir: Path) -> None:
    ckpt = open_checkpoint(tiny_model_dir)
    assert ckpt.location.layout == "huggingface"
    parts = ckpt.get_parts("block.0.attn.qkv.weight")
    assert len(parts) == 3 and torch.equal(torch.cat(parts), ckpt.get("block.0.attn.qkv.weight"))
    model = Transformer.from_checkpoint(ckpt)
    qkv = model.layers[0].qkv_w
    assert isinstance(qkv, StackedRows) and qkv.shape == (model.config.qkv_width, model.config.hidden_size)
    spans = [s for f in sorted(tiny_model_dir.glob("*.safetensors")) for s in _mapping_of(f)]
    assert spans
    for t in qkv.parts + model.layers[0].qkv_b.parts:
        assert any(lo <= t.data_ptr() < hi for lo, hi in spans), "q/k/v piece does not live in the file mapping"
    # the original layout stores the fused tensor: it stays one tensor
    assert isinstance(Transformer.from_checkpoint(tiny_model_dir / "original").layers[0].qkv_w, torch.Tensor)
