"""Will a model run on this machine? A verdict from RAM (psutil) and GPU memory (nvidia-smi).

No torch: the GPU is probed with `nvidia-smi` if present; without it the GPU is unknown and the
verdict can at best be "fits on the CPU only". Budgets keep headroom for the OS, the app and the
CUDA context, so "fits" means the weights plus the KV cache at the chosen context fit with room left.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum

import psutil

log = logging.getLogger(__name__)

GIB = 1024**3
RAM_HEADROOM_BYTES = 2 * GIB       # OS + the app itself
RAM_HEADROOM_FRACTION = 0.10
GPU_HEADROOM_BYTES = GIB // 2      # CUDA context, allocator slack, activations


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
    from app.models.units import format_bytes

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
