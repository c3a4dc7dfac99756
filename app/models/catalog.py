"""The two models Lantern runs, their known configs (so sizes work offline) and which files to fetch.

The hub's current file list (exact sizes and hashes) comes from `hub.fetch_remote_model`.
Sizes follow gpt-oss-spec §2.3/§3: the root Hugging Face layout (three or fifteen
`model-*.safetensors` shards + index) is the only copy of the weights that is downloaded; the
`original/` and `metal/` copies are skipped.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from engine.config import ModelConfig

log = logging.getLogger(__name__)

# Root files the engine reads (config, tokenizer, weights + index). Nothing under original/ or metal/.
WANTED_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "model.safetensors",
    "model-*.safetensors",
)


def is_wanted(filename: str) -> bool:
    """True for a repo-root file the engine needs."""
    if "/" in filename:
        return False
    return any(fnmatch.fnmatchcase(filename, pattern) for pattern in WANTED_PATTERNS)


_HF_COMMON: dict[str, Any] = {
    "model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "experts_per_token": 4,
    "num_experts_per_tok": 4, "head_dim": 64, "hidden_size": 2880, "initial_context_length": 4096,
    "intermediate_size": 2880, "max_position_embeddings": 131072, "num_attention_heads": 64,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 150000,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                     "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": False},
    "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": False, "vocab_size": 201088,
}

# Exact root weight-shard sizes of openai/gpt-oss-20b (spec §2.3); 120b's are only known in total.
_GPT_OSS_20B_SHARDS = (4_792_272_488, 4_798_702_184, 4_170_342_232)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    repo_id: str
    name: str                   # folder name in the models dir
    title: str
    description: str
    config: ModelConfig
    download_bytes_estimate: int  # root weights + small files; exact once the hub's metadata is fetched

    def memory_needed_bytes(self, context: int) -> int:
        """Weights as the engine keeps them plus the KV cache for `context` tokens."""
        return self.config.memory_needed_bytes(context)


_SMALL_FILES_ESTIMATE = 28_000_000   # tokenizer.json (~27 MB) + configs + index

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        repo_id="openai/gpt-oss-20b", name="gpt-oss-20b", title="gpt-oss-20b",
        description="21 B parameters (3.6 B active). Runs in about 16 GB of memory.",
        config=ModelConfig.from_dict({**_HF_COMMON, "num_hidden_layers": 24, "num_local_experts": 32}),
        download_bytes_estimate=sum(_GPT_OSS_20B_SHARDS) + _SMALL_FILES_ESTIMATE,
    ),
    CatalogEntry(
        repo_id="openai/gpt-oss-120b", name="gpt-oss-120b", title="gpt-oss-120b",
        description="117 B parameters (5.1 B active). Needs about 64 GB of memory or an 80 GB GPU.",
        config=ModelConfig.from_dict({**_HF_COMMON, "num_hidden_layers": 36, "num_local_experts": 128}),
        download_bytes_estimate=65_250_000_000 + _SMALL_FILES_ESTIMATE,
    ),
)


def entry_for(repo_id: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.repo_id == repo_id), None)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file to download, with what the hub says it must be."""

    name: str
    size: int
    sha256: str | None          # LFS files
    blob_id: str | None         # git blob sha1 (non-LFS files are checked against it)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "RemoteFile":
        return cls(str(raw["name"]), int(raw["size"]), raw.get("sha256"), raw.get("blob_id"))

    def same_content(self, size: int, sha256: str | None, blob_id: str | None) -> bool:
        """Would a file of this size and these hashes hold the same bytes as this one?"""
        if size != self.size:
            return False
        if self.sha256 or sha256:
            return (self.sha256 or "").lower() == (sha256 or "").lower()
        return bool(self.blob_id) and (self.blob_id or "").lower() == (blob_id or "").lower()


@dataclass(frozen=True, slots=True)
class RemoteModel:
    repo_id: str
    revision: str               # commit sha: every file is fetched from the same commit
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)
