"""gpt-oss model configuration, read from either checkpoint layout. Torch-free.

Hugging Face layout: `<repo>/config.json` (keys such as `num_local_experts`, `rope_scaling` or
`rope_parameters`) next to `model-*.safetensors`. Original layout: `<repo>/original/config.json`
(keys of OpenAI's reference `ModelConfig`) next to `model*.safetensors`. Unknown keys are ignored;
missing or impossible values raise `ConfigError` naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ModelFilesError
from engine.types import Layout

MXFP4_BLOCK = 32            # elements per MXFP4 block
MXFP4_BLOCK_BYTES = 16      # two E2M1 nibbles per byte


@dataclass(frozen=True, slots=True)
class ModelConfig:
    num_hidden_layers: int
    num_experts: int
    experts_per_token: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    head_dim: int
    num_attention_heads: int
    num_key_value_heads: int
    sliding_window: int = 128
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0       # YaRN beta_slow
    rope_ntk_beta: float = 32.0       # YaRN beta_fast
    swiglu_limit: float = 7.0
    rms_norm_eps: float = 1e-5

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def q_width(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def qkv_width(self) -> int:
        return self.q_width + 2 * self.kv_width

    @property
    def max_context(self) -> int:
        return int(self.initial_context_length * self.rope_scaling_factor)

    def is_sliding(self, layer: int) -> bool:
        """Even layers attend to the last `sliding_window` tokens (self included); odd ones to all."""
        return layer % 2 == 0

    # ---- parameter and memory accounting (spec §1.1, §3) -------------------------------------
    def expert_params(self) -> int:
        """Weights + biases of one expert (mlp1 fused gate/up, mlp2 down)."""
        h, i = self.hidden_size, self.intermediate_size
        return (2 * i * h + 2 * i) + (h * i + h)

    def attention_params(self) -> int:
        h = self.hidden_size
        return (self.qkv_width * h + self.qkv_width) + (h * self.q_width + h) + self.num_attention_heads

    def layer_dense_params(self) -> int:
        """Per layer, everything but the experts: attention, router, two norms."""
        h = self.hidden_size
        return self.attention_params() + (self.num_experts * h + self.num_experts) + 2 * h

    def params_total(self) -> int:
        h = self.hidden_size
        per_layer = self.layer_dense_params() + self.num_experts * self.expert_params()
        return self.num_hidden_layers * per_layer + 2 * self.vocab_size * h + h

    def params_active(self) -> int:
        """Parameters used per token: everything but unused experts and the embedding lookup."""
        h = self.hidden_size
        per_layer = self.layer_dense_params() + self.experts_per_token * self.expert_params()
        return self.num_hidden_layers * per_layer + self.vocab_size * h + h

    def expert_weight_bytes(self) -> int:
        """MXFP4 bytes (nibbles + E8M0 scales) of all expert weight matrices, all layers."""
        h, i = self.hidden_size, self.intermediate_size
        elems = self.num_experts * (2 * i * h + h * i)
        per_block = MXFP4_BLOCK_BYTES + 1
        return self.num_hidden_layers * (elems // MXFP4_BLOCK) * per_block

    def weight_bytes(self) -> int:
        """Resident bytes of the weights as the engine keeps them: MXFP4 experts, bf16 the rest."""
        bf16_params = self.params_total() - self.num_hidden_layers * self.num_experts * (
            3 * self.intermediate_size * self.hidden_size
        )
        return self.expert_weight_bytes() + 2 * bf16_params

    def kv_bytes_per_token(self, ring_sliding: bool = True) -> int:
        """bf16 K and V for one token in every full-attention layer (and sliding ones unless ring_sliding)."""
        layers = sum(1 for l in range(self.num_hidden_layers) if not (ring_sliding and self.is_sliding(l)))
        return layers * 2 * self.kv_width * 2

    def kv_cache_bytes(self, context: int) -> int:
        """KV cache at `context` tokens: full layers grow with context, sliding layers keep a window ring."""
        sliding_layers = sum(1 for l in range(self.num_hidden_layers) if self.is_sliding(l))
        ring = min(context, self.sliding_window + SLIDING_RING_SLACK)
        return self.kv_bytes_per_token(ring_sliding=True) * context + sliding_layers * 2 * self.kv_width * 2 * ring

    def memory_needed_bytes(self, context: int) -> int:
        return self.weight_bytes() + self.kv_cache_bytes(context)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: Path | str = "config.json") -> "ModelConfig":
        """Build from either layout's keys; ignore unknown keys; validate."""
        if not isinstance(raw, dict):
            raise ConfigError("config.json does not hold a JSON object", path=source)
        model_type = raw.get("model_type")
        if model_type is not None and model_type != "gpt_oss":
            raise ConfigError(f"This is a '{model_type}' model, not gpt-oss", path=source)

        def pick(*names: str, default: Any = None) -> Any:
            for name in names:
                if name in raw and raw[name] is not None:
                    return raw[name]
            return default

        rope = pick("rope_scaling", "rope_parameters", default={}) or {}
        if not isinstance(rope, dict):
            rope = {}
        if rope.get("rope_type", rope.get("type", "yarn")) not in ("yarn",):
            raise ConfigError(f"Unsupported RoPE type {rope.get('rope_type')!r}: gpt-oss uses YaRN", path=source)
        values: dict[str, Any] = {
            "num_hidden_layers": pick("num_hidden_layers"),
            "num_experts": pick("num_experts", "num_local_experts"),
            "experts_per_token": pick("experts_per_token", "num_experts_per_tok"),
            "vocab_size": pick("vocab_size"),
            "hidden_size": pick("hidden_size"),
            "intermediate_size": pick("intermediate_size"),
            "head_dim": pick("head_dim"),
            "num_attention_heads": pick("num_attention_heads"),
            "num_key_value_heads": pick("num_key_value_heads"),
            "sliding_window": pick("sliding_window", default=128),
            "initial_context_length": pick(
                "initial_context_length", default=rope.get("original_max_position_embeddings", 4096)
            ),
            "rope_theta": pick("rope_theta", default=rope.get("rope_theta", 150000.0)),
            "rope_scaling_factor": pick("rope_scaling_factor", default=rope.get("factor", 32.0)),
            "rope_ntk_alpha": pick("rope_ntk_alpha", default=rope.get("beta_slow", 1.0)),
            "rope_ntk_beta": pick("rope_ntk_beta", default=rope.get("beta_fast", 32.0)),
            "swiglu_limit": pick("swiglu_limit", default=7.0),
            "rms_norm_eps": pick("rms_norm_eps", default=1e-5),
        }
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise ConfigError(
                f"config.json lacks {', '.join(missing)}: is this a gpt-oss checkpoint?", path=source
            )
        try:
            ints = {k: int(values[k]) for k in (
                "num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                "intermediate_size", "head_dim", "num_attention_heads", "num_key_value_heads",
                "sliding_window", "initial_context_length")}
            floats = {k: float(values[k]) for k in (
                "rope_theta", "rope_scaling_factor", "rope_ntk_alpha", "rope_ntk_beta", "swiglu_limit",
                "rms_norm_eps")}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config.json holds a value of the wrong type ({exc})", path=source) from exc
        cfg = cls(**ints, **floats)
        cfg._validate(source)
        layer_types = raw.get("layer_types")
        if isinstance(layer_types, list) and layer_types != [
            "sliding_attention" if cfg.is_sliding(n) else "full_attention" for n in range(cfg.num_hidden_layers)
        ]:
            raise ConfigError("Unsupported layer_types: gpt-oss alternates sliding (even) and full (odd) layers",
                              path=source)
        return cfg

    def _validate(self, source: Path | str) -> None:
        problems = []
        for name in ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                     "intermediate_size", "head_dim", "num_attention_heads", "num_key_value_heads",
                     "sliding_window", "initial_context_length"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.experts_per_token > self.num_experts:
            problems.append("experts_per_token exceeds num_experts")
        if self.num_key_value_heads > 0 and self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads is not a multiple of num_key_value_heads")
        if self.head_dim % 2:
            problems.append("head_dim must be even")
        if self.hidden_size % MXFP4_BLOCK or self.intermediate_size % MXFP4_BLOCK:
            problems.append("hidden_size and intermediate_size must be multiples of 32 (MXFP4 blocks)")
        if self.rope_theta <= 1 or self.rope_scaling_factor < 1:
            problems.append("rope_theta must exceed 1 and rope_scaling_factor must be >= 1")
        if not math.isfinite(self.swiglu_limit) or self.swiglu_limit <= 0:
            problems.append("swiglu_limit must be a positive number")
        if problems:
            raise ConfigError("Impossible values in config.json: " + "; ".join(problems), path=source)


# Sliding layers keep a ring of `sliding_window + SLIDING_RING_SLACK` entries so that a chunk of up
# to SLIDING_RING_SLACK tokens can be appended, and the cache trimmed back that far, exactly.
SLIDING_RING_SLACK = 2048


@dataclass(frozen=True, slots=True)
class CheckpointLocation:
    """Where a checkpoint's config and weights are, whichever folder the user pointed at."""

    layout: Layout
    config_path: Path
    weights_dir: Path
    repo_root: Path              # the folder that holds tokenizer.json, if any


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("config.json is missing", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config.json cannot be read ({exc})", path=path) from exc


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


def locate_checkpoint(model_dir: Path | str) -> CheckpointLocation:
    """Find the layout of a model folder: a Hugging Face repo root, or its `original/` folder.

    A repo root with its own `*.safetensors` is read in the Hugging Face layout; one that holds only
    `original/` is read from there.
    """
    root = Path(model_dir).expanduser()
    if not root.exists():
        raise ModelFilesError("The model folder does not exist", path=root)
    if not root.is_dir():
        raise ModelFilesError("Expected a model folder, got a file", path=root)
    cfg_path = root / "config.json"
    if cfg_path.is_file():
        raw = _read_json(cfg_path)
        is_hf = isinstance(raw, dict) and ("model_type" in raw or "architectures" in raw or "num_local_experts" in raw)
        if is_hf and _has_weights(root):
            return CheckpointLocation("huggingface", cfg_path, root, root)
        if not is_hf and _has_weights(root):
            parent = root.parent if root.name == "original" else root
            return CheckpointLocation("original", cfg_path, root, parent)
    original = root / "original"
    if (original / "config.json").is_file() and _has_weights(original):
        return CheckpointLocation("original", original / "config.json", original, root)
    if cfg_path.is_file():
        raise ModelFilesError("config.json is there but no *.safetensors weights were found", path=root)
    raise ModelFilesError(
        "No gpt-oss checkpoint here: expected config.json and *.safetensors (or an original/ folder)", path=root
    )


def load_config(model_dir: Path | str) -> tuple[ModelConfig, CheckpointLocation]:
    location = locate_checkpoint(model_dir)
    return ModelConfig.from_dict(_read_json(location.config_path), source=location.config_path), location
