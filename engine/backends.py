"""Device selection: CUDA, Apple MPS or CPU, with the reason whenever the wanted device is not used."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from engine import kernels
from engine.errors import DeviceError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    device: str                     # "cpu" | "cuda" | "mps"
    backend: str                    # kernel set: "cuda-torch", "mps-torch", "cpu-avx512", "cpu-avx2", "cpu-neon",
                                    # "cpu-scalar", "cpu-reference"
    fallback_reason: str | None     # why the requested (or, for auto, the best) device was not used
    backend_reason: str | None = None  # on CPU: why the best native SIMD kernels (AVX-512 / NEON) are not in use,
                                       # if not (CPU lacks them, LANTERN_CPU_KERNELS override, no library)


def _cuda_problem() -> str | None:
    if not torch.backends.cuda.is_built():
        return "this PyTorch build has no CUDA support (CPU-only wheel)"
    try:
        if not torch.cuda.is_available():
            return "no usable NVIDIA GPU or driver was found"
        major, _ = torch.cuda.get_device_capability(0)
        if major < 8:
            return f"the GPU (compute capability {major}.x) lacks bf16 support; gpt-oss needs sm_80 or newer"
    except RuntimeError as exc:           # broken driver install
        return f"CUDA failed to initialise ({exc})"
    return None


def _mps_problem() -> str | None:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return "this PyTorch build has no Apple Metal (MPS) support"
    if not mps.is_available():
        return "Apple Metal (MPS) is not available on this machine (needs macOS 12.3+ on Apple silicon)"
    return None


def _cpu_backend() -> str:
    """cpu-avx512 (native kernels, AVX-512 BF16), cpu-avx2 (native, AVX2 + FMA), cpu-neon (native, AArch64 NEON),
    cpu-scalar (native, portable) or cpu-reference (pure torch). LANTERN_CPU_KERNELS=avx512|avx2|neon|scalar
    picks a native path explicitly."""
    return kernels.status().backend if kernels.ENABLED else "cpu-reference"


def _cpu_backend_reason() -> str | None:
    if not kernels.ENABLED:
        return "native kernels disabled"
    return kernels.status().reason


def select_device(requested: str = "auto") -> DeviceChoice:
    """Pick where the model runs. "auto" prefers CUDA, then MPS, then CPU; an explicit device that is
    unavailable falls back to CPU with the reason. Unknown names raise DeviceError."""
    req = (requested or "auto").lower()
    if req not in DEVICES:
        raise DeviceError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    if req == "cpu":
        return DeviceChoice("cpu", _cpu_backend(), None, _cpu_backend_reason())
    cuda_problem = _cuda_problem() if req in ("auto", "cuda") else None
    if req in ("auto", "cuda") and cuda_problem is None:
        return DeviceChoice("cuda", "cuda-torch", None)
    mps_problem = _mps_problem() if req in ("auto", "mps") else None
    if req in ("auto", "mps") and mps_problem is None:
        return DeviceChoice("mps", "mps-torch", None)
    if req == "cuda":
        reason = f"CUDA requested but {cuda_problem}; running on the CPU"
    elif req == "mps":
        reason = f"MPS requested but {mps_problem}; running on the CPU"
    else:
        reason = f"No GPU in use: {cuda_problem}; {mps_problem}"
    log.info(reason)
    return DeviceChoice("cpu", _cpu_backend(), reason, _cpu_backend_reason())
