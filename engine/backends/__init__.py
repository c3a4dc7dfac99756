"""Backends: which kernels run the forward pass, on which device, chosen once at load.

`select(device, backend)` returns a `BackendChoice`: the `Backend` object the model is built with and,
when the request could not be honoured, the reason. Registry names (`python -m engine ... --backend NAME`,
or the environment variable LANTERN_BACKEND):

  cpu-avx512 | cpu-avx2 | cpu-neon | cpu-scalar   native CPU kernels (engine.kernels), one instruction set
  cpu-reference                                  pure torch on the CPU
  cuda-triton                                    Triton kernels (MoE from packed MXFP4, attention) + torch
                                                 on an NVIDIA GPU; `--device cpu` runs the same kernels
                                                 in Triton's interpreter (slow; for tests)
  cuda-torch                                     pure torch on an NVIDIA GPU
  mps                                            torch on Apple's Metal (MPS); `--device cpu` runs the
                                                 same code on the CPU (for tests)

"auto" (the default) takes the GPU when one is usable (cuda-triton, else mps), else the CPU's best native
kernels (LANTERN_CPU_KERNELS may name another path), else cpu-reference. A machine without a GPU is not a
fallback: `fallback_reason` is set only when a GPU or backend was asked for, or a GPU is present, and it
could not be used. docs/backends.md describes the contract.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
from dataclasses import dataclass
from typing import Callable

import torch

if not torch.cuda.is_available():
    # cuda-triton on CPU tensors runs in Triton's interpreter, which must be on before triton is first
    # imported (its own helpers are made then); nothing else reads this variable.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from engine import kernels  # noqa: E402
from engine.backends.base import Backend  # noqa: E402
from engine.errors import DeviceError  # noqa: E402

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKEND_ENV = "LANTERN_BACKEND"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One registry entry: where the backend runs, why it cannot run on a device, how to make it."""

    name: str
    home: str                                   # the device it is for: "cpu" | "cuda" | "mps"
    devices: tuple[str, ...]                    # devices it accepts (home first)
    summary: str
    problem: Callable[[str], str | None]        # device type -> why it cannot run there, or None
    create: Callable[[str], Backend]


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """What `select` decided: the backend object, and the reason whenever the request was not honoured."""

    backend: Backend
    fallback_reason: str | None = None   # a GPU / backend was asked for (or a GPU is present) and is not used
    note: str | None = None              # why the best kernels of the chosen device are not in use, if not

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def device(self) -> str:
        return self.backend.device.type


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The older, plain-names view of a choice (what `select_device` returns)."""

    device: str                     # "cpu" | "cuda" | "mps"
    backend: str                    # a registry name, e.g. "cpu-avx512", "cuda-triton"
    fallback_reason: str | None
    backend_reason: str | None = None


# ---- why a device cannot be used --------------------------------------------------------------------
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


def _gpu_present_but_unusable() -> str | None:
    """A GPU this machine has that torch cannot use (then "auto" on the CPU is a fallback), or None."""
    cuda = _cuda_problem()
    if cuda is not None:
        driver = os.path.exists("/proc/driver/nvidia/version")
        visible = torch.backends.cuda.is_built() and _safe_device_count() > 0
        if driver or visible:
            return f"an NVIDIA GPU is present but {cuda}"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        mps = _mps_problem()
        if mps is not None:
            return f"this Mac has an Apple GPU but {mps}"
    return None


def _safe_device_count() -> int:
    try:
        return torch.cuda.device_count()
    except RuntimeError:
        return 0


def _triton_problem(device: str) -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton)"
    if device == "cuda":
        problem = _cuda_problem()
        if problem is not None:
            return problem
    from engine.backends import triton_kernels

    return triton_kernels.problem(device)


def _mps_device_problem(device: str) -> str | None:
    return _mps_problem() if device == "mps" else None


def _native_problem(path: str) -> Callable[[str], str | None]:
    def problem(device: str) -> str | None:
        if not kernels.available():
            return kernels.status().reason or "native kernels unavailable"
        if not kernels.path_available(path):  # type: ignore[arg-type]
            return f"this CPU cannot run the {path} kernels"
        return None

    return problem


def _make_native(path: str) -> Callable[[str], Backend]:
    def create(device: str) -> Backend:
        from engine.backends.cpu import CpuNativeBackend

        return CpuNativeBackend(path)  # type: ignore[arg-type]

    return create


def _make_reference(device: str) -> Backend:
    from engine.backends.cpu import CpuTorchBackend

    return CpuTorchBackend()


def _make_cuda_triton(device: str) -> Backend:
    from engine.backends.cuda import CudaTritonBackend

    return CudaTritonBackend(device)


def _make_cuda_torch(device: str) -> Backend:
    from engine.backends.cuda import CudaTorchBackend

    return CudaTorchBackend(device)


def _make_mps(device: str) -> Backend:
    from engine.backends.mps import MpsBackend

    return MpsBackend(device)


REGISTRY: dict[str, BackendSpec] = {
    **{f"cpu-{path}": BackendSpec(f"cpu-{path}", "cpu", ("cpu",), f"native {label} kernels on the CPU",
                                  _native_problem(path), _make_native(path))
       for path, label in (("avx512", "AVX-512 BF16"), ("avx2", "AVX2 + FMA"), ("neon", "AArch64 NEON"),
                           ("scalar", "portable scalar"))},
    "cpu-reference": BackendSpec("cpu-reference", "cpu", ("cpu",), "pure torch on the CPU",
                                 lambda device: None, _make_reference),
    "cuda-triton": BackendSpec("cuda-triton", "cuda", ("cuda", "cpu"),
                               "Triton kernels on an NVIDIA GPU (on the CPU: Triton's interpreter)",
                               _triton_problem, _make_cuda_triton),
    "cuda-torch": BackendSpec("cuda-torch", "cuda", ("cuda",), "pure torch on an NVIDIA GPU",
                              lambda device: _cuda_problem(), _make_cuda_torch),
    "mps": BackendSpec("mps", "mps", ("mps", "cpu"), "torch on Apple's Metal (MPS; on the CPU for tests)",
                       _mps_device_problem, _make_mps),
}


def names() -> list[str]:
    """Every backend name `select` accepts ("auto" first)."""
    return ["auto", *REGISTRY]


def _best_cpu() -> tuple[Backend, str | None]:
    """The CPU's best backend (honouring LANTERN_CPU_KERNELS) and why it is not AVX-512/NEON, if not."""
    from engine.backends.cpu import CpuNativeBackend, CpuTorchBackend

    status = kernels.status()
    if status.available:
        return CpuNativeBackend("auto"), status.reason
    return CpuTorchBackend(), status.reason


def select(device: str | None = "auto", backend: str | None = None) -> BackendChoice:
    """Choose the backend once: `device` auto | cpu | cuda | mps, `backend` a registry name or auto
    (None: LANTERN_BACKEND, else auto). Unknown names and impossible pairs raise DeviceError; a backend or
    device that cannot run here falls back to the CPU's best, with the reason."""
    req_dev = (device or "auto").strip().lower()
    if req_dev.startswith("cuda:"):
        req_dev = "cuda"
    if req_dev not in DEVICES:
        raise DeviceError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    req_be = (backend if backend is not None else os.environ.get(BACKEND_ENV, "")).strip().lower() or "auto"
    if req_be not in REGISTRY and req_be != "auto":
        raise DeviceError(f"Unknown backend {req_be!r}; choose one of {', '.join(names())}")

    if req_be == "auto":
        return _select_auto(req_dev)
    spec = REGISTRY[req_be]
    dev = spec.home if req_dev == "auto" else req_dev
    if dev not in spec.devices:
        raise DeviceError(f"The {spec.name} backend runs on {' or '.join(spec.devices)}, not on {dev}")
    problem = spec.problem(dev)
    if problem is None:
        note = "native kernels not used: cpu-reference requested" if (
            spec.name == "cpu-reference" and kernels.available()) else None
        return BackendChoice(spec.create(dev), None, note)
    best, note = _best_cpu()
    reason = f"{spec.name} requested but {problem}; running on {best.name}"
    log.info(reason)
    return BackendChoice(best, reason, note)


def _select_auto(req_dev: str) -> BackendChoice:
    cuda_problem = _cuda_problem() if req_dev in ("auto", "cuda") else None
    if req_dev in ("auto", "cuda") and cuda_problem is None:
        triton_problem = _triton_problem("cuda")
        if triton_problem is None:
            return BackendChoice(_make_cuda_triton("cuda"))
        return BackendChoice(_make_cuda_torch("cuda"), None, f"Triton kernels unavailable ({triton_problem})")
    mps_problem = _mps_problem() if req_dev in ("auto", "mps") else None
    if req_dev in ("auto", "mps") and mps_problem is None:
        return BackendChoice(_make_mps("mps"))
    best, note = _best_cpu()
    if req_dev == "cuda":
        reason: str | None = f"CUDA requested but {cuda_problem}; running on the CPU"
    elif req_dev == "mps":
        reason = f"MPS requested but {mps_problem}; running on the CPU"
    elif req_dev == "auto":
        reason = _gpu_present_but_unusable()
        if reason is not None:
            reason += "; running on the CPU"
    else:
        reason = None
    if reason:
        log.info(reason)
    return BackendChoice(best, reason, note)


def select_device(requested: str = "auto", backend: str | None = None) -> DeviceChoice:
    """`select` reported with plain names (device, backend name, fallback reason, note)."""
    choice = select(requested, backend)
    return DeviceChoice(choice.device, choice.name, choice.fallback_reason, choice.note)


__all__ = ["BACKEND_ENV", "DEVICES", "REGISTRY", "Backend", "BackendChoice", "BackendSpec", "DeviceChoice",
           "names", "select", "select_device"]
