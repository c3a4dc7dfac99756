"""Small random gpt-oss checkpoints for tests, written in BOTH layouts with the same weights.

`write_checkpoint(root, spec, seed)` writes the Hugging Face layout at `root/` (config.json, sharded
model-*.safetensors + model.safetensors.index.json, tokenizer.json + tokenizer_config.json) and the
original layout at `root/original/` (config.json, dtypes.json, model.safetensors or several shards).
The MoE weights are real MXFP4: random nibbles and E8M0 scales in a sane range, identical bytes in both
layouts. Vocabulary is the real 201088 rows so token ids from the real tokenizer are valid.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "resources" / "tokenizer"
VOCAB = 201088


@dataclass(frozen=True)
class TinySpec:
    num_hidden_layers: int = 2
    num_experts: int = 4
    experts_per_token: int = 2
    hidden_size: int = 64
    intermediate_size: int = 64
    head_dim: int = 64
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    sliding_window: int = 8
    vocab_size: int = VOCAB
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    swiglu_limit: float = 7.0
    hf_shards: int = 2              # number of model-*.safetensors files at the repo root
    original_shards: int = 1        # 1: original/model.safetensors, else model--0000k-of-0000n.safetensors
    scale_range: tuple[int, int] = (118, 124)   # E8M0 scale bytes (inclusive): 2^-9 .. 2^-3

    def original_config(self) -> dict:
        keys = ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                "intermediate_size", "swiglu_limit", "head_dim", "num_attention_heads", "num_key_value_heads",
                "sliding_window", "initial_context_length", "rope_theta", "rope_scaling_factor",
                "rope_ntk_alpha", "rope_ntk_beta")
        d = asdict(self)
        return {k: d[k] for k in keys}

    def hf_config(self) -> dict:
        n = self.num_hidden_layers
        return {
            "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
            "attention_dropout": 0.0, "eos_token_id": 200002, "pad_token_id": 199999,
            "experts_per_token": self.experts_per_token, "num_experts_per_tok": self.experts_per_token,
            "num_local_experts": self.num_experts, "head_dim": self.head_dim, "hidden_act": "silu",
            "hidden_size": self.hidden_size, "initial_context_length": self.initial_context_length,
            "initializer_range": 0.02, "intermediate_size": self.intermediate_size,
            "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)],
            "max_position_embeddings": int(self.initial_context_length * self.rope_scaling_factor),
            "num_attention_heads": self.num_attention_heads, "num_hidden_layers": n,
            "num_key_value_heads": self.num_key_value_heads, "output_router_logits": False,
            "rms_norm_eps": 1e-05,
            "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
                "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
            "rope_scaling": {"beta_fast": self.rope_ntk_beta, "beta_slow": self.rope_ntk_alpha,
                             "factor": self.rope_scaling_factor,
                             "original_max_position_embeddings": self.initial_context_length,
                             "rope_type": "yarn", "truncate": False},
            "rope_theta": self.rope_theta, "router_aux_loss_coef": 0.9, "sliding_window": self.sliding_window,
            "swiglu_limit": self.swiglu_limit, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "use_cache": True, "vocab_size": self.vocab_size,
        }


def random_weights(spec: TinySpec, seed: int) -> dict[str, torch.Tensor]:
    """Original-named tensors with magnitudes that keep activations O(1) and exercise the clamps."""
    g = torch.Generator().manual_seed(seed)
    h, e, i, v = spec.hidden_size, spec.num_experts, spec.intermediate_size, spec.vocab_size
    q = spec.num_attention_heads * spec.head_dim
    qkv = q + 2 * spec.num_key_value_heads * spec.head_dim

    def normal(*shape: int, std: float, mean: float = 0.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * std + mean).to(torch.bfloat16)

    def packed(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        blocks = torch.randint(0, 256, (*shape, 16), generator=g, dtype=torch.int32).to(torch.uint8)
        lo, hi = spec.scale_range
        scales = torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int32).to(torch.uint8)
        return blocks, scales

    w: dict[str, torch.Tensor] = {"embedding.weight": normal(v, h, std=1.0)}
    for n in range(spec.num_hidden_layers):
        p = f"block.{n}."
        b1, s1 = packed(e, 2 * i, h // 32)
        b2, s2 = packed(e, h, i // 32)
        w.update({
            p + "attn.norm.scale": normal(h, std=0.1, mean=1.0),
            p + "attn.qkv.weight": normal(qkv, h, std=1.0 / math.sqrt(h)),
            p + "attn.qkv.bias": normal(qkv, std=0.1),
            p + "attn.sinks": normal(spec.num_attention_heads, std=1.5, mean=2.0),   # comparable to the keys
            p + "attn.out.weight": normal(h, q, std=1.0 / math.sqrt(q)),
            p + "attn.out.bias": normal(h, std=0.1),
            p + "mlp.norm.scale": normal(h, std=0.1, mean=1.0),
            p + "mlp.gate.weight": normal(e, h, std=1.0 / math.sqrt(h)),
            p + "mlp.gate.bias": normal(e, std=0.5),
            p + "mlp.mlp1_weight.blocks": b1, p + "mlp.mlp1_weight.scales": s1,
            p + "mlp.mlp1_bias": normal(e, 2 * i, std=3.0),       # pushes gate/up past the +-7 clamps
            p + "mlp.mlp2_weight.blocks": b2, p + "mlp.mlp2_weight.scales": s2,
            p + "mlp.mlp2_bias": normal(e, h, std=0.1),
        })
    w["norm.scale"] = normal(h, std=0.1, mean=1.0)
    w["unembedding.weight"] = normal(v, h, std=1.0 / math.sqrt(h))
    return w


def to_hf(weights: dict[str, torch.Tensor], spec: TinySpec) -> dict[str, torch.Tensor]:
    """Rename to the HF layout (spec §2.2): split qkv rows, MXFP4 bytes unchanged."""
    q = spec.num_attention_heads * spec.head_dim
    kv = spec.num_key_value_heads * spec.head_dim
    out = {"model.embed_tokens.weight": weights["embedding.weight"], "model.norm.weight": weights["norm.scale"],
           "lm_head.weight": weights["unembedding.weight"]}
    for n in range(spec.num_hidden_layers):
        p, o = f"block.{n}.", f"model.layers.{n}."
        for kind in ("weight", "bias"):
            fused = weights[p + f"attn.qkv.{kind}"]
            out[o + f"self_attn.q_proj.{kind}"] = fused[:q].clone()
            out[o + f"self_attn.k_proj.{kind}"] = fused[q:q + kv].clone()
            out[o + f"self_attn.v_proj.{kind}"] = fused[q + kv:].clone()
        out.update({
            o + "input_layernorm.weight": weights[p + "attn.norm.scale"],
            o + "self_attn.sinks": weights[p + "attn.sinks"],
            o + "self_attn.o_proj.weight": weights[p + "attn.out.weight"],
            o + "self_attn.o_proj.bias": weights[p + "attn.out.bias"],
            o + "post_attention_layernorm.weight": weights[p + "mlp.norm.scale"],
            o + "mlp.router.weight": weights[p + "mlp.gate.weight"],
            o + "mlp.router.bias": weights[p + "mlp.gate.bias"],
            o + "mlp.experts.gate_up_proj_blocks": weights[p + "mlp.mlp1_weight.blocks"],
            o + "mlp.experts.gate_up_proj_scales": weights[p + "mlp.mlp1_weight.scales"],
            o + "mlp.experts.gate_up_proj_bias": weights[p + "mlp.mlp1_bias"],
            o + "mlp.experts.down_proj_blocks": weights[p + "mlp.mlp2_weight.blocks"],
            o + "mlp.experts.down_proj_scales": weights[p + "mlp.mlp2_weight.scales"],
            o + "mlp.experts.down_proj_bias": weights[p + "mlp.mlp2_bias"],
        })
    return out


def _shard(names: list[str], count: int) -> list[list[str]]:
    count = max(1, min(count, len(names)))
    return [names[k::count] for k in range(count)]


def _dtype_tag(t: torch.Tensor) -> str:
    return {torch.bfloat16: "BF16", torch.uint8: "UE8"}[t.dtype]


def write_checkpoint(root: Path | str, spec: TinySpec = TinySpec(), seed: int = 0) -> Path:
    """Write both layouts of one random model under `root`; return `root` (the HF repo root)."""
    root = Path(root)
    orig = root / "original"
    orig.mkdir(parents=True, exist_ok=True)
    weights = random_weights(spec, seed)

    # original/ layout
    (orig / "config.json").write_text(json.dumps(spec.original_config(), indent=2))
    dtypes = {k: ("FP4" if k.endswith(".blocks") else _dtype_tag(t)) for k, t in weights.items()}
    (orig / "dtypes.json").write_text(json.dumps(dtypes, indent=2))
    names = sorted(weights)
    if spec.original_shards <= 1:
        save_file(weights, str(orig / "model.safetensors"))
    else:
        shards = _shard(names, spec.original_shards)
        for k, part in enumerate(shards, 1):
            save_file({n: weights[n] for n in part}, str(orig / f"model--{k:05d}-of-{len(shards):05d}.safetensors"))

    # Hugging Face layout at the root
    hf = to_hf(weights, spec)
    (root / "config.json").write_text(json.dumps(spec.hf_config(), indent=2))
    shards = _shard(sorted(hf), spec.hf_shards)
    weight_map = {}
    total = 0
    for k, part in enumerate(shards):
        fname = f"model-{k:05d}-of-{len(shards) - 1:05d}.safetensors"
        save_file({n: hf[n].contiguous() for n in part}, str(root / fname), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += hf[n].numel() * hf[n].element_size()
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (root / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 199998, "do_sample": True, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}))
    with gzip.open(TOKENIZER_DIR / "tokenizer.json.gz", "rb") as src, open(root / "tokenizer.json", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(TOKENIZER_DIR / "tokenizer_config.json", root / "tokenizer_config.json")
    return root
