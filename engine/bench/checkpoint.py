"""Random gpt-oss checkpoints at full size, written as a stream (never the whole model in memory).

Tensor names/shapes/dtypes follow the Hugging Face layout of openai/gpt-oss-20b (spec §2.2): three
`model-0000k-of-00002.safetensors` shards plus `model.safetensors.index.json`, `config.json`,
`generation_config.json` and the bundled tokenizer files. Values are random with the magnitudes the test
checkpoints use (activations O(1)); large tensors repeat a random pool at random offsets, which keeps
writing at disk speed and is irrelevant to speed measurements.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import logging
import math
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT_VERSION = 2   # 2: values from torch's generator (1 used numpy's; the built app carries no numpy)
_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "resources" / "tokenizer"
_CHUNK = 1 << 25  # elements per write


@dataclass(frozen=True)
class Shape20b:
    layers: int = 24
    experts: int = 32
    experts_per_token: int = 4
    hidden: int = 2880
    intermediate: int = 2880
    heads: int = 64
    kv_heads: int = 8
    head_dim: int = 64
    vocab: int = 201088
    sliding_window: int = 128


@dataclass(frozen=True)
class TensorPlan:
    name: str
    dtype: str               # safetensors tag: BF16 | U8
    shape: tuple[int, ...]
    kind: str                # how to fill: normal | blocks | scales
    std: float = 1.0
    mean: float = 0.0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * (2 if self.dtype == "BF16" else 1)


def hf_config(s: Shape20b) -> dict:
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
        "attention_dropout": 0.0, "eos_token_id": 200002, "pad_token_id": 199999,
        "experts_per_token": s.experts_per_token, "num_experts_per_tok": s.experts_per_token,
        "num_local_experts": s.experts, "head_dim": s.head_dim, "hidden_act": "silu", "hidden_size": s.hidden,
        "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": s.intermediate,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(s.layers)],
        "max_position_embeddings": 131072, "num_attention_heads": s.heads, "num_hidden_layers": s.layers,
        "num_key_value_heads": s.kv_heads, "output_router_logits": False, "rms_norm_eps": 1e-05,
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
        "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                         "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": False},
        "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": s.sliding_window,
        "swiglu_limit": 7.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "vocab_size": s.vocab,
    }


def plan(s: Shape20b) -> list[TensorPlan]:
    h, e, i, v = s.hidden, s.experts, s.intermediate, s.vocab
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    out = [TensorPlan("model.embed_tokens.weight", "BF16", (v, h), "normal", 1.0)]
    for n in range(s.layers):
        p = f"model.layers.{n}."
        out += [
            TensorPlan(p + "input_layernorm.weight", "BF16", (h,), "normal", 0.1, 1.0),
            TensorPlan(p + "self_attn.q_proj.weight", "BF16", (q, h), "normal", 1 / math.sqrt(h)),
            TensorPlan(p + "self_attn.q_proj.bias", "BF16", (q,), "normal", 0.1),
            TensorPlan(p + "self_attn.k_proj.weight", "BF16", (kv, h), "normal", 1 / math.sqrt(h)),
            TensorPlan(p + "self_attn.k_proj.bias", "BF16", (kv,), "normal", 0.1),
            TensorPlan(p + "self_attn.v_proj.weight", "BF16", (kv, h), "normal", 1 / math.sqrt(h)),
            TensorPlan(p + "self_attn.v_proj.bias", "BF16", (kv,), "normal", 0.1),
            TensorPlan(p + "self_attn.sinks", "BF16", (s.heads,), "normal", 1.5, 2.0),
            TensorPlan(p + "self_attn.o_proj.weight", "BF16", (h, q), "normal", 1 / math.sqrt(q)),
            TensorPlan(p + "self_attn.o_proj.bias", "BF16", (h,), "normal", 0.1),
            TensorPlan(p + "post_attention_layernorm.weight", "BF16", (h,), "normal", 0.1, 1.0),
            TensorPlan(p + "mlp.router.weight", "BF16", (e, h), "normal", 1 / math.sqrt(h)),
            TensorPlan(p + "mlp.router.bias", "BF16", (e,), "normal", 0.5),
            TensorPlan(p + "mlp.experts.gate_up_proj_blocks", "U8", (e, 2 * i, h // 32, 16), "blocks"),
            TensorPlan(p + "mlp.experts.gate_up_proj_scales", "U8", (e, 2 * i, h // 32), "scales"),
            TensorPlan(p + "mlp.experts.gate_up_proj_bias", "BF16", (e, 2 * i), "normal", 1.0),
            TensorPlan(p + "mlp.experts.down_proj_blocks", "U8", (e, h, i // 32, 16), "blocks"),
            TensorPlan(p + "mlp.experts.down_proj_scales", "U8", (e, h, i // 32), "scales"),
            TensorPlan(p + "mlp.experts.down_proj_bias", "BF16", (e, h), "normal", 0.1),
        ]
    out += [TensorPlan("model.norm.weight", "BF16", (h,), "normal", 0.1, 1.0),
            TensorPlan("lm_head.weight", "BF16", (v, h), "normal", 1 / math.sqrt(h))]
    return out


def _shards(tensors: list[TensorPlan], count: int) -> list[list[TensorPlan]]:
    total = sum(t.nbytes for t in tensors)
    target = total / count
    shards: list[list[TensorPlan]] = [[]]
    size = 0
    for t in tensors:
        if size >= target * len(shards) and len(shards) < count:
            shards.append([])
        shards[-1].append(t)
        size += t.nbytes
    return shards


class _Filler:
    """Random bytes for each tensor kind, from pools reused at random offsets (torch's CPU generator)."""

    def __init__(self, seed: int) -> None:
        import torch

        self.torch = torch
        self.gen = torch.Generator().manual_seed(seed)
        pool = _CHUNK + 4096
        self.normal = torch.randn(pool, generator=self.gen, dtype=torch.float32)       # [pool] f32
        self.blocks = torch.randint(0, 256, (pool,), generator=self.gen, dtype=torch.uint8)
        self.scales = torch.randint(118, 125, (pool,), generator=self.gen, dtype=torch.uint8)  # 2^-9 .. 2^-3

    def chunk(self, t: TensorPlan, n: int) -> bytes:
        off = int(self.torch.randint(0, 4096, (1,), generator=self.gen))
        if t.kind == "blocks":
            return _raw_bytes(self.blocks[off:off + n])
        if t.kind == "scales":
            return _raw_bytes(self.scales[off:off + n])
        vals = self.normal[off:off + n] * t.std + t.mean             # [n] f32
        return _raw_bytes(vals.to(self.torch.bfloat16))                 # round to nearest even


def _raw_bytes(tensor: "torch.Tensor") -> bytes:  # noqa: F821 - torch is imported lazily
    """The bytes of a CPU tensor, in memory order (no numpy: the built app does not carry it)."""
    tensor = tensor.contiguous()
    return ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size())


def _write_shard(path: Path, tensors: list[TensorPlan], filler: _Filler) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors:
            n = math.prod(t.shape)
            for a in range(0, n, _CHUNK):
                f.write(filler.chunk(t, min(_CHUNK, n - a)))
        f.flush()
        os.fsync(f.fileno())


def default_cache_dir() -> Path:
    base = os.environ.get("LANTERN_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lantern-bench")
    return Path(base)


def ensure_checkpoint(root: Path | None = None, shape: Shape20b = Shape20b(), seed: int = 0) -> tuple[Path, float]:
    """Return (checkpoint dir, seconds spent writing it; 0.0 when reused)."""
    root = root or default_cache_dir()
    target = root / f"gpt-oss-20b-random-v{FORMAT_VERSION}"
    if (target / "model.safetensors.index.json").is_file():
        return target, 0.0
    tmp = root / (target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    filler = _Filler(seed)
    tensors = plan(shape)
    shards = _shards(tensors, 3)
    weight_map: dict[str, str] = {}
    for k, part in enumerate(shards):
        fname = f"model-{k:05d}-of-{len(shards) - 1:05d}.safetensors"
        log.info("writing %s (%.2f GB)", fname, sum(t.nbytes for t in part) / 1e9)
        _write_shard(tmp / fname, part, filler)
        weight_map.update({t.name: fname for t in part})
    total = sum(t.nbytes for t in tensors)
    (tmp / "config.json").write_text(json.dumps(hf_config(shape), indent=2))
    (tmp / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 199998, "do_sample": True, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}))
    with gzip.open(_TOKENIZER_DIR / "tokenizer.json.gz", "rb") as src, open(tmp / "tokenizer.json", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(_TOKENIZER_DIR / "tokenizer_config.json", tmp / "tokenizer_config.json")
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    os.replace(tmp, target)
    return target, time.perf_counter() - t0
