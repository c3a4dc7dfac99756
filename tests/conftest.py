"""Shared fixtures. `tiny_model_dir`: a random 2-layer gpt-oss checkpoint (both layouts), session-wide."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoints import TinySpec, write_checkpoint

TINY_SPEC = TinySpec()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repo root (HF layout) of a tiny random model; `original/` beside it holds the same weights."""
    return write_checkpoint(tmp_path_factory.mktemp("tiny-gpt-oss"), TINY_SPEC, seed=0)
