"""Memory-mapped gpt-oss checkpoints, in either layout (spec §2).

The safetensors header is parsed here and every tensor is a `torch.frombuffer` view of a read-only
`mmap` of its file: opening a checkpoint reads only the headers, copies nothing into anonymous memory,
and the kernel pages weights in (and out again) as they are used.

Tensors are addressed by their *original* names (`block.N.attn.qkv.weight`, ...). In the Hugging Face
layout they are mapped from `model.layers.N...`; the one tensor that has no single HF counterpart, the
fused `attn.qkv` weight/bias, is concatenated from q/k/v_proj (a copy: attention is ~3 % of the weights).

Every expected tensor is checked (presence, dtype, shape, bytes inside the file) when the checkpoint is
opened, so a broken download fails at once with a `ModelFilesError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import CheckpointLocation, ModelConfig, load_config
from engine.errors import ModelFilesError

if TYPE_CHECKING:  # torch is imported only when a tensor is read: `info` and validation stay light
    import torch

log = logging.getLogger(__name__)

_ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "U8": 1, "I8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1}


def _torch_dtype(tag: str) -> "torch.dtype":
    import torch

    return {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
            "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
            "BOOL": torch.bool}[tag]
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What one tensor must look like: original name, safetensors dtype tag, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def expected_tensors(cfg: ModelConfig) -> list[TensorSpec]:
    """All tensors of a gpt-oss checkpoint in original naming, derived from the config (spec §2.1)."""
    h, e, i = cfg.hidden_size, cfg.num_experts, cfg.intermediate_size
    g_h, g_i = h // 32, i // 32
    specs = [TensorSpec("embedding.weight", "BF16", (cfg.vocab_size, h))]
    for n in range(cfg.num_hidden_layers):
        p = f"block.{n}."
        specs += [
            TensorSpec(p + "attn.norm.scale", "BF16", (h,)),
            TensorSpec(p + "attn.qkv.weight", "BF16", (cfg.qkv_width, h)),
            TensorSpec(p + "attn.qkv.bias", "BF16", (cfg.qkv_width,)),
            TensorSpec(p + "attn.sinks", "BF16", (cfg.num_attention_heads,)),
            TensorSpec(p + "attn.out.weight", "BF16", (h, cfg.q_width)),
            TensorSpec(p + "attn.out.bias", "BF16", (h,)),
            TensorSpec(p + "mlp.norm.scale", "BF16", (h,)),
            TensorSpec(p + "mlp.gate.weight", "BF16", (e, h)),
            TensorSpec(p + "mlp.gate.bias", "BF16", (e,)),
            TensorSpec(p + "mlp.mlp1_weight.blocks", "U8", (e, 2 * i, g_h, 16)),
            TensorSpec(p + "mlp.mlp1_weight.scales", "U8", (e, 2 * i, g_h)),
            TensorSpec(p + "mlp.mlp1_bias", "BF16", (e, 2 * i)),
            TensorSpec(p + "mlp.mlp2_weight.blocks", "U8", (e, h, g_i, 16)),
            TensorSpec(p + "mlp.mlp2_weight.scales", "U8", (e, h, g_i)),
            TensorSpec(p + "mlp.mlp2_bias", "BF16", (e, h)),
        ]
    specs += [TensorSpec("norm.scale", "BF16", (h,)), TensorSpec("unembedding.weight", "BF16", (cfg.vocab_size, h))]
    return specs


_HF_SUFFIX = {
    "attn.norm.scale": "input_layernorm.weight",
    "attn.sinks": "self_attn.sinks",
    "attn.out.weight": "self_attn.o_proj.weight",
    "attn.out.bias": "self_attn.o_proj.bias",
    "mlp.norm.scale": "post_attention_layernorm.weight",
    "mlp.gate.weight": "mlp.router.weight",
    "mlp.gate.bias": "mlp.router.bias",
    "mlp.mlp1_weight.blocks": "mlp.experts.gate_up_proj_blocks",
    "mlp.mlp1_weight.scales": "mlp.experts.gate_up_proj_scales",
    "mlp.mlp1_bias": "mlp.experts.gate_up_proj_bias",
    "mlp.mlp2_weight.blocks": "mlp.experts.down_proj_blocks",
    "mlp.mlp2_weight.scales": "mlp.experts.down_proj_scales",
    "mlp.mlp2_bias": "mlp.experts.down_proj_bias",
}
_HF_TOP = {"embedding.weight": "model.embed_tokens.weight", "norm.scale": "model.norm.weight",
           "unembedding.weight": "lm_head.weight"}


def hf_parts(spec: TensorSpec, cfg: ModelConfig) -> list[TensorSpec]:
    """The Hugging Face tensor(s) holding one original tensor (q/k/v_proj for the fused qkv)."""
    if spec.name in _HF_TOP:
        return [TensorSpec(_HF_TOP[spec.name], spec.dtype, spec.shape)]
    _, n, rest = spec.name.split(".", 2)
    p = f"model.layers.{n}."
    if rest in ("attn.qkv.weight", "attn.qkv.bias"):
        kind = rest.rsplit(".", 1)[1]
        tail = spec.shape[1:]
        return [TensorSpec(f"{p}self_attn.{proj}_proj.{kind}", spec.dtype, (rows, *tail))
                for proj, rows in (("q", cfg.q_width), ("k", cfg.kv_width), ("v", cfg.kv_width))]
    return [TensorSpec(p + _HF_SUFFIX[rest], spec.dtype, spec.shape)]


class SafetensorsFile:
    """One `.safetensors` file: header parsed, bytes mapped read-only, tensors as zero-copy views."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ModelFilesError(f"Cannot open weights file ({exc.strerror})", path=path) from exc
        try:
            self.size = os.fstat(fd).st_size
            if self.size < 8:
                raise ModelFilesError("Weights file is empty or truncated (no safetensors header)", path=path)
            header_len = struct.unpack("<Q", os.pread(fd, 8, 0))[0]
            if header_len > _MAX_HEADER or 8 + header_len > self.size:
                raise ModelFilesError("Weights file is truncated or not a safetensors file (bad header length)",
                                      path=path)
            try:
                header = json.loads(os.pread(fd, header_len, 8))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ModelFilesError(f"Weights file has a corrupt safetensors header ({exc})", path=path) from exc
            if not isinstance(header, dict):
                raise ModelFilesError("Weights file has a corrupt safetensors header", path=path)
            self._mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.data_start = 8 + header_len
        header.pop("__metadata__", None)
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, meta in header.items():
            try:
                begin, end = (int(x) for x in meta["data_offsets"])
                entry = (str(meta["dtype"]), tuple(int(d) for d in meta["shape"]), begin, end)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelFilesError("Corrupt safetensors header entry", path=path, tensor=name) from exc
            self.entries[name] = entry

    def check(self, spec: TensorSpec) -> None:
        """Raise a `ModelFilesError` naming file and tensor unless `spec.name` is there as specified."""
        if spec.name not in self.entries:
            raise ModelFilesError("Tensor missing from the checkpoint", path=self.path, tensor=spec.name)
        dtype, shape, begin, end = self.entries[spec.name]
        if dtype != spec.dtype:
            raise ModelFilesError(f"Tensor has dtype {dtype}, expected {spec.dtype}", path=self.path,
                                  tensor=spec.name)
        if shape != spec.shape:
            raise ModelFilesError(f"Tensor has shape {list(shape)}, expected {list(spec.shape)} for this config",
                                  path=self.path, tensor=spec.name)
        nbytes = _ITEMSIZE[dtype] * _numel(shape)
        if end - begin != nbytes or begin < 0:
            raise ModelFilesError("Tensor byte range does not match its shape (corrupt header)", path=self.path,
                                  tensor=spec.name)
        if self.data_start + end > self.size:
            raise ModelFilesError(
                f"File is truncated: the header needs {self.data_start + end:,} bytes, the file has {self.size:,}"
                " (re-download it)", path=self.path, tensor=spec.name)

    def tensor(self, name: str) -> torch.Tensor:
        """Zero-copy, read-only view of one tensor (do not write to it)."""
        import torch

        dtype, shape, begin, end = self.entries[name]
        tdtype = _torch_dtype(dtype)
        count = (end - begin) // tdtype.itemsize
        if count == 0:
            return torch.empty(shape, dtype=tdtype)
        with warnings.catch_warnings():
            # The mapping is read-only on purpose; torch warns because it cannot enforce that.
            warnings.filterwarnings("ignore", message=".*not writable.*")
            warnings.filterwarnings("ignore", message=".*non-writable.*")
            flat = torch.frombuffer(self._mmap, dtype=tdtype, count=count, offset=self.data_start + begin)
        return flat.view(shape)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Checkpoint:
    """An opened checkpoint: config, location and zero-copy tensors by original name."""

    def __init__(self, config: ModelConfig, location: CheckpointLocation) -> None:
        self.config = config
        self.location = location
        self.files = self._open_files()
        self._where: dict[str, SafetensorsFile] = {}
        for f in self.files:
            for name in f.entries:
                self._where.setdefault(name, f)
        self._specs = {s.name: s for s in expected_tensors(config)}
        self._validate()

    @property
    def bytes_on_disk(self) -> int:
        return sum(f.size for f in self.files)

    def _open_files(self) -> list[SafetensorsFile]:
        wdir = self.location.weights_dir
        index_path = wdir / "model.safetensors.index.json"
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
                names = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ModelFilesError(f"Unreadable safetensors index ({exc})", path=index_path) from exc
            for fname in names:
                if not (wdir / fname).is_file():
                    raise ModelFilesError("A weights file listed in the index is missing (incomplete download?)",
                                          path=wdir / fname)
            paths = [wdir / fname for fname in names]
        else:
            paths = sorted(wdir.glob("*.safetensors"))
        if not paths:
            raise ModelFilesError("No *.safetensors weights in the model folder", path=wdir)
        return [SafetensorsFile(p) for p in paths]

    def _file_for(self, name: str) -> SafetensorsFile:
        f = self._where.get(name)
        if f is None:
            raise ModelFilesError("Tensor missing from the checkpoint", path=self.location.weights_dir, tensor=name)
        return f

    def _stored(self, spec: TensorSpec) -> list[TensorSpec]:
        return hf_parts(spec, self.config) if self.location.layout == "huggingface" else [spec]

    def _validate(self) -> None:
        for spec in self._specs.values():
            for part in self._stored(spec):
                if part.name.endswith(("_blocks", ".blocks")) and part.name not in self._where:
                    dense = part.name[: -len("_blocks")] if part.name.endswith("_blocks") else None
                    if dense is not None and dense in self._where:
                        raise ModelFilesError(
                            "The experts are stored dequantized (bf16), not as MXFP4: use the original gpt-oss "
                            "release (MXFP4 experts) instead", path=self._where[dense].path, tensor=dense)
                self._file_for(part.name).check(part)

    def get(self, name: str) -> torch.Tensor:
        """Tensor `name` (original naming) as stored: bf16 or packed uint8, a view of the file mapping.

        Exception: the HF layout's fused `attn.qkv.*` is a concatenated copy of q/k/v_proj.
        """
        parts = self.get_parts(name)
        if len(parts) == 1:
            return parts[0]
        import torch

        return torch.cat(parts, dim=0)

    def get_parts(self, name: str) -> list[torch.Tensor]:
        """Tensor `name` (original naming) as the stored pieces whose row concatenation it is, all views of
        the file mapping: one piece, except the HF layout's `attn.qkv.*` (q_proj, k_proj, v_proj)."""
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"{name} is not a gpt-oss tensor name")
        return [self._file_for(p.name).tensor(p.name) for p in self._stored(spec)]

    def names(self) -> list[str]:
        return list(self._specs)

    def byte_range(self, name: str) -> tuple[Path, int, int] | None:
        """(file, offset, length) of tensor `name` (original naming) where it is stored in one piece."""
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"{name} is not a gpt-oss tensor name")
        parts = self._stored(spec)
        if len(parts) != 1:
            return None
        f = self._file_for(parts[0].name)
        _, _, begin, end = f.entries[parts[0].name]
        return f.path, f.data_start + begin, end - begin


def open_checkpoint(model_dir: Path | str) -> Checkpoint:
    """Open a gpt-oss checkpoint folder (HF repo root or its `original/`), memory-mapped and validated."""
    config, location = load_config(model_dir)
    log.info("Opening %s checkpoint at %s", location.layout, location.weights_dir)
    return Checkpoint(config, location)
