"""The two models Lantern runs, their known configs (so sizes work offline) and which files to fetch.

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

from app.models import network
from app.models.errors import AccessNeededError, ModelManagerError, NetworkError, NotFoundError, OfflineError

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


@dataclass(frozen=True, slots=True)
class RemoteModel:
    repo_id: str
    revision: str               # commit sha: every file is fetched from the same commit
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def translate_hub_error(exc: BaseException, repo_id: str) -> ModelManagerError:
    """Turn a huggingface_hub / network exception into a message a user can act on."""
    if isinstance(exc, ModelManagerError):
        return exc
    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if name == "OfflineModeIsEnabled":
        return OfflineError("Lantern is in offline mode: turn it off in Settings to download models.")
    if name == "GatedRepoError" or status in (401, 403):
        return AccessNeededError(
            f"{repo_id} needs access: log in with a Hugging Face token that has accepted the model's terms.")
    if name in ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
                "RemoteEntryNotFoundError") or status == 404:
        return NotFoundError(f"{repo_id} was not found on the hub.")
    if status is not None:
        return NetworkError(f"The hub answered with an error ({status}). Try again later.")
    return OfflineError(f"Cannot reach the hub ({exc}). Check your internet connection.")


def fetch_remote_model(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None,
                       timeout: float = 30.0) -> RemoteModel:
    """Ask the hub which files the engine needs, with sizes and hashes (one metadata request)."""
    hf = network.hub()
    try:
        api = hf.HfApi(endpoint=endpoint or network.default_endpoint(), token=token)
        info = api.model_info(repo_id, files_metadata=True, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed, user-facing error
        raise translate_hub_error(exc, repo_id) from exc
    files = []
    for sib in info.siblings or []:
        if not is_wanted(sib.rfilename):
            continue
        lfs = sib.lfs
        size = lfs.size if lfs is not None else sib.size
        if size is None:
            raise NetworkError(f"The hub did not give the size of {sib.rfilename}; try again later.")
        files.append(RemoteFile(sib.rfilename, int(size), lfs.sha256 if lfs is not None else None, sib.blob_id))
    if not any(f.name == "config.json" for f in files) or not any(f.name.endswith(".safetensors") for f in files):
        raise NotFoundError(f"{repo_id} holds no Hugging Face layout weights (config.json + *.safetensors).")
    if not info.sha:
        raise NetworkError("The hub did not say which revision to download; try again later.")
    return RemoteModel(repo_id, info.sha, tuple(sorted(files, key=lambda f: f.name)))
