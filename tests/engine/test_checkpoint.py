"""Checkpoint loading: both layouts, sharding, zero-copy mmap, and an actionable error per broken case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint import expected_tensors, open_checkpoint
from engine.errors import ConfigError, ModelFilesError
from engine.model import Transformer


def test_both_layouts_hold_the_same_tensors(tiny_model_dir: Path) -> None:
    hf, orig = open_checkpoint(tiny_model_dir), open_checkpoint(tiny_model_dir / "original")
    assert hf.location.layout == "huggingface" and orig.location.layout == "original"
    assert len(hf.files) == 2 and len(orig.files) == 1
    assert hf.config == orig.config
    for name in orig.names():
        a, b = hf.get(name), orig.get(name)
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name


def test_names_follow_the_layer_count(model_dir_for: Callable[[str], Path]) -> None:
    root = model_dir_for("w16-e8k4-l4")            # 4 layers, original/ split over two files
    ckpt = open_checkpoint(root / "original")
    assert len(ckpt.files) == 2
    assert sum(n.startswith("block.3.") for n in ckpt.names()) == 15
    assert not any(n.startswith("block.4.") for n in ckpt.names())
    ref = load_file(str(next(p for p in (root / "original").glob("*.safetensors"))))
    for name, t in ref.items():
        assert torch.equal(ckpt.get(name), t)


def _anonymous_bytes() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Anonymous line")


def _mapping_of(path: Path) -> list[tuple[int, int]]:
    spans = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[-1] == str(path.resolve()):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            spans.append((lo, hi))
    return spans


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_weights_are_memory_mapped_not_copied(tiny_model_dir: Path) -> None:
    path = tiny_model_dir / "original" / "model.safetensors"
    weight_bytes = path.stat().st_size
    before = _anonymous_bytes()
    ckpt = open_checkpoint(tiny_model_dir / "original")
    tensors = [ckpt.get(n) for n in ckpt.names()]
    checksum = sum(int(t.view(torch.uint8).reshape(-1)[:: 4096].sum()) for t in tensors)  # touch every page
    model = Transformer.from_checkpoint(ckpt)
    grown = _anonymous_bytes() - before
    assert checksum > 0
    assert grown < 0.1 * weight_bytes, f"anonymous memory grew by {grown:,} B for {weight_bytes:,} B of weights"
    spans = _mapping_of(path)
    assert spans, "the weights file is not mapped"
    for t in (model.embedding, model.unembedding, model.layers[0].qkv_w, model.layers[1].experts.mlp1_blocks):
        assert any(lo <= t.data_ptr() < hi for lo, hi in spans), "tensor does not live in the file mapping"


# ---- broken checkpoints ------------------------------------------------------------------------------

@pytest.fixture()
def broken_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir / "original", dst / "original")
    return dst / "original"


def _rewrite(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def test_missing_tensor(broken_copy: Path) -> None:
    _rewrite(broken_copy, lambda t: t.pop("block.1.mlp.mlp2_bias"))
    with pytest.raises(ModelFilesError, match=r"missing.*block\.1\.mlp\.mlp2_bias") as err:
        open_checkpoint(broken_copy)
    assert err.value.tensor == "block.1.mlp.mlp2_bias"


def test_wrong_shape(broken_copy: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t["block.0.attn.sinks"] = t["block.0.attn.sinks"][:-1].clone()
    _rewrite(broken_copy, edit)
    with pytest.raises(ModelFilesError, match=r"shape \[3\], expected \[4\].*block\.0\.attn\.sinks.*model\.safetensors"):
        open_checkpoint(broken_copy)


def test_wrong_dtype(broken_copy: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t["norm.scale"] = t["norm.scale"].float()
    _rewrite(broken_copy, edit)
    with pytest.raises(ModelFilesError, match=r"dtype F32, expected BF16.*norm\.scale"):
        open_checkpoint(broken_copy)


def test_truncated_file(broken_copy: Path) -> None:
    path = broken_copy / "model.safetensors"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(ModelFilesError, match=r"truncated.*model\.safetensors") as err:
        open_checkpoint(broken_copy)
    assert err.value.path == path and err.value.tensor is not None


def test_not_a_gpt_oss_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "llama"
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("original"))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["model_type"] = "llama"
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"'llama' model, not gpt-oss.*config\.json"):
        open_checkpoint(dst)


def test_config_missing_fields(broken_copy: Path) -> None:
    cfg = json.loads((broken_copy / "config.json").read_text())
    del cfg["num_experts"]
    (broken_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="num_experts"):
        open_checkpoint(broken_copy)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="does not exist"):
        open_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFilesError, match="No gpt-oss checkpoint here"):
        open_checkpoint(tmp_path / "empty")


def test_shard_listed_in_index_is_missing(tiny_model_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "hf"
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("original"))
    shard = sorted(dst.glob("model-*.safetensors"))[-1]
    shard.unlink()                                  # an interrupted download: one shard never arrived
    with pytest.raises(ModelFilesError, match=rf"missing.*{shard.name}"):
        open_checkpoint(dst)


def test_expected_tensor_count_from_config(tiny_model_dir: Path) -> None:
    cfg = open_checkpoint(tiny_model_dir).config
    assert len(expected_tensors(cfg)) == 3 + 15 * cfg.num_hidden_layers


def test_hf_checkpoint_with_dequantized_experts(tiny_model_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "bf16"
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("original"))
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    for shard in sorted(dst.glob("model-*.safetensors")):
        tensors = load_file(str(shard))
        for name in [n for n in tensors if n.endswith("_proj_blocks")]:
            del tensors[name]
            tensors[name[: -len("_blocks")]] = torch.zeros(2, 2, dtype=torch.bfloat16)
            index["weight_map"][name[: -len("_blocks")]] = shard.name
        save_file(tensors, str(shard))
    (dst / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFilesError, match=r"dequantized \(bf16\), not as MXFP4.*gate_up_proj"):
        open_checkpoint(dst)


def test_unsupported_layer_types(tiny_model_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("original"))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["layer_types"] = ["full_attention"] * cfg["num_hidden_layers"]
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="layer_types"):
        open_checkpoint(dst)
