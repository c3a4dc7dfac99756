"""Fixtures and helpers shared by tests/app/test_models_*.py (import the fixtures by name)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from app.models import network
from app.models.fit import GpuInfo, SystemMemory
from app.models.manager import ModelManager
from tests.app.fakehub import FakeHub, tiny_repo

REPO = "openai/gpt-oss-20b"
GIB = 1024**3
# What the app must fetch: root files the engine reads; not README, original/ or metal/.
ENGINE_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "model.safetensors.index.json", "model-00000-of-00002.safetensors",
                "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
SYSTEM = SystemMemory(32 * GIB, (GpuInfo("Test GPU", 24 * GIB),))


def wanted_total(files: dict[str, bytes]) -> int:
    return sum(len(files[n]) for n in ENGINE_FILES)


@pytest.fixture
def repo_files() -> dict[str, bytes]:
    return tiny_repo()


@pytest.fixture
def hub(repo_files: dict[str, bytes]) -> Iterator[FakeHub]:
    server = FakeHub(repos={REPO: repo_files})
    yield server
    server.close()


@pytest.fixture(autouse=False)
def online() -> Iterator[None]:
    network.set_offline(False)
    yield
    network.set_offline(False)


@pytest.fixture
def make_manager(tmp_path: Path, hub: FakeHub, online: None) -> Iterator[Callable[..., ModelManager]]:
    made: list[ModelManager] = []

    def make(models_dir: Path | None = None, **kw) -> ModelManager:
        kw.setdefault("endpoint", hub.url)
        kw.setdefault("system", SYSTEM)
        kw.setdefault("retry_backoff_s", 0.05)
        m = ModelManager(models_dir or tmp_path / "models", **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, step: float = 0.01) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(step)
    raise AssertionError("condition not met in time")


def bytes_on_disk(folder: Path) -> int:
    """Bytes of the engine files there, complete or partial (.part)."""
    total = 0
    for name in ENGINE_FILES:
        for p in (folder / name, folder / (name + ".part")):
            if p.exists():
                total += p.stat().st_size
    return total
