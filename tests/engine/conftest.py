"""Checkpoints shared by the engine tests (written once per session, both layouts each)."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    # Triton kernels run on the CPU under the interpreter, which must be on before triton is first
    # imported (transformers, an oracle, may import it); engine.backends sets the same.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path
from typing import Callable

import pytest

from engine.tokenizer import Tokenizer, load_tokenizer
from tests.checkpoints import TinySpec, write_checkpoint

# Several shapes: small windows (sequences span many windows), the real 128-token window with
# sequences past it, different expert counts / top-k, 2-4 layers, sharded files in both layouts.
SPECS: dict[str, TinySpec] = {
    "w8-e4k2-l2": TinySpec(),
    "w16-e8k4-l4": TinySpec(num_hidden_layers=4, num_experts=8, experts_per_token=4, sliding_window=16,
                            num_attention_heads=8, num_key_value_heads=2, hf_shards=3, original_shards=2),
    "w128-e6k3-l3": TinySpec(num_hidden_layers=3, num_experts=6, experts_per_token=3, sliding_window=128,
                             intermediate_size=96),
}


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    """The bundled o200k_harmony tokenizer (no model folder)."""
    return load_tokenizer()


@pytest.fixture(scope="session")
def model_dir_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = write_checkpoint(tmp_path_factory.mktemp(name), SPECS[name], seed=list(SPECS).index(name) + 1)
        return made[name]

    return get
