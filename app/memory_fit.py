"""Before a load: will the model fit in this computer's free RAM? (torch-free; psutil and engine.config)

The engine itself refuses a CUDA load that does not fit the GPU, but on the CPU (and on Apple's
unified memory) a model bigger than the free RAM would only start swapping the whole system or be
killed part-way. The window asks this first and lets the user decide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from app.models.units import format_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemoryShortfall:
    """The model needs more RAM than is free now."""

    model_name: str
    context: int
    weight_bytes: int
    kv_cache_bytes: int
    available_bytes: int
    total_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes

    def summary(self) -> str:
        return f"{self.model_name} needs more memory than is free right now."

    def details(self) -> str:
        return (f"It needs about {format_bytes(self.needed_bytes)}: {format_bytes(self.weight_bytes)} of weights "
                f"and {format_bytes(self.kv_cache_bytes)} for a context of {self.context:,} tokens. "
                f"Only {format_bytes(self.available_bytes)} of this computer's {format_bytes(self.total_bytes)} "
                "of RAM is free.\n\n"
                "Loading it anyway will probably make the computer very slow, or fail part-way. Close other "
                "programs, choose a shorter context length in Settings, or use a smaller model.")

    def message(self) -> str:
        return f"{self.summary()}\n\n{self.details()}"


def ram_bytes() -> tuple[int, int]:
    """(available, total) RAM in bytes."""
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def runs_in_ram(device: str, gpu_present: bool) -> bool:
    """Whether the weights will live in system RAM ("auto" picks CUDA when an NVIDIA GPU is there)."""
    return device in ("cpu", "mps") or (device == "auto" and not gpu_present)


def check_ram(model_dir: Path, context: int, device: str, *, gpu_present: bool, freed_bytes: int = 0,
              ram: Callable[[], tuple[int, int]] | None = None) -> MemoryShortfall | None:
    """A shortfall if the model at `context` tokens needs more than the free RAM, else None.

    `freed_bytes`: RAM the model loaded now gives back first (a load replaces it).
    `ram` gives (available, total) bytes; default: psutil now.
    None also when the folder cannot be read (the load itself then reports what is wrong) and
    when the model goes to a GPU (the engine checks the GPU's free memory itself).
    """
    if not runs_in_ram(device, gpu_present):
        return None
    try:
        from engine.config import load_config

        config, location = load_config(Path(model_dir))
    except Exception as error:  # noqa: BLE001 - never block a load on this check
        log.debug("memory check skipped for %s: %s", model_dir, error)
        return None
    context = min(int(context), config.max_context)
    weights, kv = config.weight_bytes(), config.kv_cache_bytes(context)
    available, total = (ram or ram_bytes)()
    available = min(total, available + max(0, freed_bytes))
    if weights + kv <= available:
        return None
    return MemoryShortfall(location.repo_root.name or Path(model_dir).name, context, weights, kv, available, total)
