"""Will a gpt-oss model fit this computer? The one place that answers it. Torch-free (psutil, nvidia-smi).

Two questions, one set of rules:

* `assess(needed_bytes, system)`: the verdict for a model on this machine at all (the Models panel,
  the welcome page, the CLI's list): "fits" on the GPU, "fits on the CPU only", or "will not fit",
  from the total RAM and GPU memory with headroom kept for the OS, the app and the CUDA context.
  `assess_folder(model_dir, context, system)` does the same for a model folder on disk.
* `check_before_load(model_dir, context, device, ...)`: will it fit in the memory that is *free now*?
  The window asks this before loading; `Engine.load` asks `enough_free()` about the GPU's free memory.

"Needed" is always `ModelConfig.memory_needed_bytes(context)`: the resident weights (MXFP4 experts
kept packed) plus the KV cache at that context.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

GIB = 1024**3
RAM_HEADROOM_BYTES = 2 * GIB       # OS + the app itself
RAM_HEADROOM_FRACTION = 0.10
GPU_HEADROOM_BYTES = GIB // 2      # CUDA context, allocator slack, activations


def format_bytes(n: float) -> str:
    """Decimal units, as disks and the hub count: 13_761_316_904 -> '13.8 GB' (same as the models panel)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class Verdict(str, Enum):
    FITS = "fits"
    CPU_ONLY = "cpu_only"
    WONT_FIT = "wont_fit"

    @property
    def label(self) -> str:
        return {"fits": "Fits", "cpu_only": "Fits on the CPU only", "wont_fit": "Will not fit"}[self.value]


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    total_bytes: int


@dataclass(frozen=True, slots=True)
class SystemMemory:
    ram_total_bytes: int
    gpus: tuple[GpuInfo, ...] | None    # None: unknown (no nvidia-smi)

    @property
    def ram_budget_bytes(self) -> int:
        return max(0, self.ram_total_bytes - max(RAM_HEADROOM_BYTES, int(self.ram_total_bytes * RAM_HEADROOM_FRACTION)))

    @property
    def best_gpu(self) -> GpuInfo | None:
        if not self.gpus:
            return None
        return max(self.gpus, key=lambda g: g.total_bytes)


@dataclass(frozen=True, slots=True)
class FitAssessment:
    verdict: Verdict
    needed_bytes: int
    explanation: str


def parse_nvidia_smi(output: str) -> tuple[GpuInfo, ...]:
    """Parse `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB)."""
    gpus = []
    for line in output.splitlines():
        if not line.strip():
            continue
        name, _, mib = line.rpartition(",")
        try:
            gpus.append(GpuInfo(name.strip(), int(float(mib.strip()) * 1024 * 1024)))
        except ValueError:
            log.warning("Unreadable nvidia-smi line: %r", line)
    return tuple(gpus)


def probe_gpus(timeout: float = 5.0) -> tuple[GpuInfo, ...] | None:
    """NVIDIA GPUs from nvidia-smi (may take seconds: call it off the GUI thread); None if unknown."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi failed (%s); GPU memory unknown", exc)
        return None
    return parse_nvidia_smi(out) or None


def probe_system(*, gpus: bool = True) -> SystemMemory:
    """RAM (psutil) and, with `gpus`, GPU memory from nvidia-smi (may take seconds; else: unknown)."""
    return SystemMemory(ram_total_bytes=int(psutil.virtual_memory().total), gpus=probe_gpus() if gpus else None)


def assess(needed_bytes: int, system: SystemMemory) -> FitAssessment:
    """Verdict for a model needing `needed_bytes` (weights + KV cache) on `system`."""
    gpu = system.best_gpu
    if gpu is not None and needed_bytes <= gpu.total_bytes - GPU_HEADROOM_BYTES:
        return FitAssessment(Verdict.FITS, needed_bytes,
                             f"Needs {format_bytes(needed_bytes)}; {gpu.name} has {format_bytes(gpu.total_bytes)}.")
    ram = system.ram_budget_bytes
    if needed_bytes <= ram:
        why = ("no NVIDIA GPU was found" if gpu is None
               else f"{gpu.name} has only {format_bytes(gpu.total_bytes)}")
        return FitAssessment(Verdict.CPU_ONLY, needed_bytes,
                             f"Needs {format_bytes(needed_bytes)}; {why}, but the "
                             f"{format_bytes(system.ram_total_bytes)} of RAM is enough (slower).")
    where = f"{format_bytes(system.ram_total_bytes)} of RAM"
    if gpu is not None:
        where += f" and {format_bytes(gpu.total_bytes)} on {gpu.name}"
    return FitAssessment(Verdict.WONT_FIT, needed_bytes,
                         f"Needs {format_bytes(needed_bytes)}; this computer has {where}. "
                         "A shorter context length lowers the need a little.")


def assess_folder(model_dir: Path | str, context: int, system: SystemMemory) -> FitAssessment | None:
    """`assess` for the model in `model_dir` at `context` tokens; None if its config cannot be read."""
    from engine.config import load_config

    try:
        config, _ = load_config(Path(model_dir))
    except Exception as error:  # noqa: BLE001 - a verdict is advice; the load reports what is wrong
        log.debug("no fit verdict for %s: %s", model_dir, error)
        return None
    return assess(config.memory_needed_bytes(min(int(context), config.max_context)), system)


# ---------------------------------------------------------------------------------------------- now

def enough_free(needed_bytes: int, available_bytes: int, *, freed_bytes: int = 0) -> bool:
    """The rule for "does it fit in what is free now": `freed_bytes` (a model that a load replaces
    gives its memory back first) counts as free."""
    return needed_bytes <= available_bytes + max(0, freed_bytes)


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


def check_before_load(model_dir: Path | str, context: int, device: str, *, gpu_present: bool,
                      freed_bytes: int = 0,
                      ram: Callable[[], tuple[int, int]] | None = None) -> MemoryShortfall | None:
    """A shortfall if the model at `context` tokens needs more than the free RAM, else None.

    `freed_bytes`: RAM the model loaded now gives back first (a load replaces it).
    `ram` gives (available, total) bytes; default: psutil now (`ram_bytes`).
    None also when the folder cannot be read (the load itself then reports what is wrong) and
    when the model goes to a GPU (`Engine.load` checks the GPU's free memory with `enough_free`).
    Reads config.json: call it off the GUI thread.
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
    if enough_free(weights + kv, available, freed_bytes=freed_bytes):
        return None
    available = min(total, available + max(0, freed_bytes))
    return MemoryShortfall(location.repo_root.name or Path(model_dir).name, context, weights, kv, available, total)
