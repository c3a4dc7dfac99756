"""Optional native CPU kernels (MXFP4 MoE experts, bf16 matmuls, decode attention), loaded with ctypes.

The shared library is built from the sources here (lantern_kernels.cpp and one .cpp per instruction set;
the interface is lantern_kernels.h) by setup.py at install time (`pip install -e .`, `make kernels`). The
binding below is read from that header (engine.kernels.header), not restated. When the library is missing
the engine uses its pure-torch path; `status()` says which and why. Importing this module does not import
torch.

Paths: "avx512" (AVX-512 BF16), "avx2" (AVX2 + FMA), "neon" (AArch64) and "scalar" (portable C++). "auto" runs
the best one the CPU supports, unless the environment variable LANTERN_CPU_KERNELS (avx512 | avx2 | neon |
scalar) names another; a name the CPU cannot run falls back to the best available, with the reason in
`status()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.kernels import header
from engine.stacked import StackedRows

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

KernelPath = Literal["auto", "scalar", "avx512", "avx2", "neon"]  # the lk_path names (a test checks)
DISABLE_ENV = "LANTERN_NO_NATIVE"  # set to 1 to force the pure-torch path
PATH_ENV = "LANTERN_CPU_KERNELS"  # avx512 | avx2 | neon | scalar: what path="auto" runs (read at each call)
SLOWER = "expect ~25× slower"  # the pure-torch CPU path against the native kernels (decode, 20b)

_LIBRARY_NAME = "_lantern_kernels"  # engine/kernels/_lantern_kernels<python extension suffix>, or .dll on Windows


@dataclass(frozen=True)
class KernelStatus:
    """Whether the native kernels are usable, which backend name they give, and why not if not."""

    available: bool
    backend: str  # "cpu-avx512" | "cpu-avx2" | "cpu-neon" | "cpu-scalar" | "cpu-reference"
    reason: str | None
    library: str | None


class KernelError(RuntimeError):
    """A native kernel refused a call (a path this CPU cannot run, or arguments it does not take)."""


try:
    _INTERFACE: header.Interface | None = header.read_interface()
    _INTERFACE_PROBLEM: str | None = None
except (OSError, header.HeaderError) as exc:  # a broken install (or bundle) without the header
    _INTERFACE, _INTERFACE_PROBLEM = None, f"its interface header {header.HEADER.name} could not be read: {exc}"
_PATHS: dict[str, int] = dict(_INTERFACE.paths) if _INTERFACE else {}
_NAMES: dict[int, str] = {code: name for name, code in _PATHS.items()}


def _status_code(name: str) -> int:
    assert _INTERFACE is not None
    return _INTERFACE.statuses[name]


def _check(rc: int, function: str, path: str) -> None:
    """Raise for a non-LK_OK status of `function` (ValueError for a bad expert index, else KernelError)."""
    if rc == 0:
        return
    assert _INTERFACE is not None
    name = _INTERFACE.status_name(rc)
    if name == "LK_ERR_EXPERT":
        raise ValueError(f"{function}: expert index out of range ({name}, code {rc})")
    raise KernelError(f"{function} failed: {name} (code {rc}, path {path})")


def _backend(code: int) -> str:
    return f"cpu-{_NAMES[code]}"


class _Lib:
    def __init__(self, path: str, interface: header.Interface) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(path)
        self.cdll.lk_abi_version.restype = ctypes.c_int
        self.abi_version = int(self.cdll.lk_abi_version())
        if self.abi_version == interface.abi_version:
            header.bind(self.cdll, interface)


def _library_path() -> str | None:
    spec = importlib.util.find_spec(f"engine.kernels.{_LIBRARY_NAME}")
    if spec is not None and spec.origin:
        return spec.origin
    dll = Path(__file__).with_name(f"{_LIBRARY_NAME}.dll")  # Windows: a plain DLL (setup.py, MinGW / clang)
    return str(dll) if dll.is_file() else None


def _missing(why: str) -> str:
    return f"the native kernels are missing ({why}); {SLOWER}"


@lru_cache(maxsize=1)
def _load() -> tuple[_Lib | None, str | None]:
    """(library, None) or (None, the reason in words for the user)."""
    flag = os.environ.get(DISABLE_ENV, "")
    if flag not in ("", "0"):
        return None, f"the native kernels are disabled by {DISABLE_ENV}={flag}; {SLOWER}"
    if _INTERFACE is None:
        return None, _missing(str(_INTERFACE_PROBLEM))
    path = _library_path()
    if path is None:
        log.info("native kernels not built: `make kernels` (or `python setup.py build_ext --inplace`) builds them")
        return None, _missing("they were not built when Lantern was installed, e.g. no C++ compiler was found")
    try:
        lib = _Lib(path, _INTERFACE)
    except (OSError, AttributeError) as exc:
        return None, _missing(f"{Path(path).name} failed to load: {exc}")
    if lib.abi_version != _INTERFACE.abi_version:
        return None, _missing(f"{Path(path).name} is out of date: interface version {lib.abi_version}, this "
                              f"Lantern needs {_INTERFACE.abi_version}; `make kernels` rebuilds it")
    return lib, None


_hidden_paths: frozenset[str] = frozenset()  # paths the library acts as if this CPU could not run (tests)


def _hide(paths: frozenset[str]) -> None:
    lib, _ = _load()
    assert lib is not None
    lib.cdll.lk_hide_paths(sum(1 << _PATHS[p] for p in paths))


@contextlib.contextmanager
def simulate_cpu_without(*paths: KernelPath) -> Iterator[None]:
    """Testing: inside the block the library acts as if this CPU could not run `paths` (e.g. "avx512": an
    AVX2-only CPU). Detection, path="auto", status() and explicit requests all see the smaller CPU."""
    global _hidden_paths
    lib, reason = _load()
    if lib is None:
        raise KernelError(f"native kernels unavailable: {reason}")
    before = _hidden_paths
    _hidden_paths = before | frozenset(paths)
    _hide(_hidden_paths)
    try:
        yield
    finally:
        _hidden_paths = before
        _hide(before)


_CPU_LACKS = {"avx2": "lacks AVX-512 BF16", "scalar": "has none of AVX-512 BF16, AVX2 + FMA or NEON"}
_KIND = {"avx2": "AVX2", "scalar": "portable scalar"}


def _best_reason(code: int) -> str | None:
    """Why the best path this CPU runs is not one of the widest (None when it is)."""
    name = _NAMES[code]
    return f"this CPU {_CPU_LACKS[name]}, so the {_KIND[name]} kernels are in use" if name in _CPU_LACKS else None


@lru_cache(maxsize=16)
def _auto_path_for(requested: str, hidden: frozenset[str]) -> tuple[int, str | None]:
    lib, _ = _load()
    if lib is None:
        return 0, None
    best = lib.cdll.lk_best_path()
    if requested in ("", "auto"):
        return best, _best_reason(best)
    names = ", ".join(n for n in _PATHS if n != "auto")
    if requested not in _PATHS:
        note = f"{PATH_ENV}={requested!r} is not one of {names}; ignored"
        log.warning(note)
        why = _best_reason(best)
        return best, note + (f"; {why}" if why else "")
    code = _PATHS[requested]
    if not lib.cdll.lk_path_available(code):
        note = f"{PATH_ENV}={requested} asks for kernels this CPU cannot run; using {_backend(best)}"
        log.warning(note)
        return best, note
    if code == best:  # honoured, and what the CPU would pick anyway: still say that a setting is in effect
        lacks = _CPU_LACKS.get(_NAMES[code])
        return code, f"{_backend(code)} chosen by {PATH_ENV}={requested} (the best this CPU runs anyway" + (
            f": it {lacks})" if lacks else ")")
    return code, f"{_backend(code)} forced by {PATH_ENV}={requested} (this CPU's best is {_backend(best)})"


def _auto_path(requested: str) -> tuple[int, str | None]:
    """(path code, reason) that path="auto" runs for LANTERN_CPU_KERNELS=`requested` ("" when unset); the reason
    is None only when the best path runs and it is one of the widest (AVX-512 BF16, NEON), with no override."""
    return _auto_path_for(requested, _hidden_paths)


def _path_code(path: KernelPath) -> int:
    """The library's path code for a wrapper's `path` argument ("auto" honours LANTERN_CPU_KERNELS)."""
    if path != "auto":
        return _PATHS[path]
    return _auto_path(os.environ.get(PATH_ENV, "").strip().lower())[0]


def path_available(path: KernelPath) -> bool:
    """True when the library is loaded and this CPU can run `path` (whatever LANTERN_CPU_KERNELS says)."""
    lib, _ = _load()
    return lib is not None and bool(lib.cdll.lk_path_available(_PATHS[path]))


def status() -> KernelStatus:
    """Whether the native kernels are usable, which backend path="auto" runs and why (loads the library).

    `reason` is None only when the widest kernels this CPU has (AVX-512 BF16, NEON) run with no override;
    otherwise it says why not (the CPU lacks them, LANTERN_CPU_KERNELS), or, when the library is unavailable,
    why, in words for the user ("the native kernels are missing (...); expect ~25× slower")."""
    lib, reason = _load()
    if lib is None:
        return KernelStatus(False, "cpu-reference", reason, None)
    code, note = _auto_path(os.environ.get(PATH_ENV, "").strip().lower())
    return KernelStatus(True, _backend(code), note, lib.path)


def runnable_paths() -> list[str]:
    """The native paths this CPU (and OS) can run, the one path="auto" picks without an override first
    (LANTERN_CPU_KERNELS aside); [] when the library is unavailable."""
    lib, _ = _load()
    if lib is None:
        return []
    best = lib.cdll.lk_best_path()
    return [_NAMES[best]] + [p for p, code in _PATHS.items()
                             if p != "auto" and code != best and lib.cdll.lk_path_available(code)]


def available() -> bool:
    return _load()[0] is not None


def _lib() -> _Lib:
    lib, reason = _load()
    if lib is None:
        raise KernelError(f"native kernels unavailable: {reason}")
    return lib


_threads_override: int | None = None


def kernel_threads() -> int:
    """Threads the native kernels use: torch's intra-op count (as it was outside `serial_torch`)."""
    import torch

    return _threads_override if _threads_override is not None else torch.get_num_threads()


@contextlib.contextmanager
def serial_torch(enabled: bool = True) -> Iterator[None]:
    """Run torch's own ops single-threaded inside the block; the native kernels keep the usual count."""
    global _threads_override
    if not enabled or _threads_override is not None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    _threads_override = before
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _threads_override = None


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def moe_experts(
    h: torch.Tensor,
    expert_idx: torch.Tensor,
    expert_w: torch.Tensor,
    experts: Any,
    swiglu_limit: float,
    *,
    path: KernelPath = "auto",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Native `moe_experts` with the exact semantics of engine.moe.moe_experts (HELPERS.md contract).

    h [T, D] bf16, expert_idx [T, K] int64, expert_w [T, K] float32; `experts` has the packed tensors
    mlp1_blocks [E, 2I, D/32, 16] u8, mlp1_scales [E, 2I, D/32] u8, mlp1_bias [E, 2I],
    mlp2_blocks [E, D, I/32, 16] u8, mlp2_scales [E, D, I/32] u8, mlp2_bias [E, D]. Returns [T, D] bf16.
    """
    import torch

    lib = _lib()
    T, D = h.shape
    K = expert_idx.shape[1]
    b1, s1 = experts.mlp1_blocks, experts.mlp1_scales
    b2, s2 = experts.mlp2_blocks, experts.mlp2_scales
    E, two_i = b1.shape[0], b1.shape[1]
    I = two_i // 2
    assert h.device.type == "cpu" and h.dtype == torch.bfloat16, (h.device, h.dtype)
    assert b1.shape == (E, two_i, D // 32, 16) and s1.shape == (E, two_i, D // 32), (b1.shape, s1.shape)
    assert b2.shape == (E, D, I // 32, 16) and s2.shape == (E, D, I // 32), (b2.shape, s2.shape)
    assert b1.dtype == torch.uint8 and s1.dtype == torch.uint8 and b2.dtype == torch.uint8 and s2.dtype == torch.uint8
    bias1 = experts.mlp1_bias.to(torch.bfloat16).contiguous()  # [E, 2I]; bf16 in the checkpoint (exact)
    bias2 = experts.mlp2_bias.to(torch.bfloat16).contiguous()  # [E, D]
    h_c = h.contiguous()
    idx_c = expert_idx.to(torch.int64).contiguous()
    w_c = expert_w.to(torch.float32).contiguous()
    b1, s1, b2, s2 = b1.contiguous(), s1.contiguous(), b2.contiguous(), s2.contiguous()
    out = torch.empty((T, D), dtype=torch.bfloat16)
    if T == 0:
        return out
    threads = num_threads if num_threads is not None else kernel_threads()
    rc = lib.cdll.lk_moe_experts(
        _ptr(h_c), _ptr(idx_c), _ptr(w_c), _ptr(b1), _ptr(s1), _ptr(bias1), _ptr(b2), _ptr(s2), _ptr(bias2),
        _ptr(out), T, K, E, D, I, float(swiglu_limit), _path_code(path), int(threads),
    )
    _check(rc, "lk_moe_experts", path)
    return out


def _stacked_args(weight: StackedRows, bias: StackedRows | None, cache: dict[Any, Any] | None) -> tuple[Any, ...]:
    """ctypes arrays (weight pointers, bias pointers, row counts) for a stacked weight. With `cache` (the CPU
    backend's, for the model's own q/k/v: pointers fixed for its lifetime) they are built once per
    (weight, bias) pair; the entry holds both, so the pointers stay valid and the ids are not reused."""
    key = (id(weight), id(bias))
    if cache is not None and key in cache:
        return cache[key][2]
    n = len(weight.parts)
    for p in weight.parts:
        assert p.is_contiguous() and p.device.type == "cpu", "stacked weight parts must be contiguous CPU tensors"
    if bias is not None:
        assert bias.rows == weight.rows and all(b.is_contiguous() for b in bias.parts), (bias.rows, weight.rows)
    ws = (ctypes.c_void_p * n)(*[_ptr(p) for p in weight.parts])
    bs = (ctypes.c_void_p * n)(*([_ptr(b) for b in bias.parts] if bias is not None else [None] * n))
    ns = (ctypes.c_int64 * n)(*weight.rows)
    args = (ws, bs, ns, n)
    if cache is not None:
        cache[key] = (weight, bias, args)
    return args


def linear_bf16(
    x: torch.Tensor,
    weight: torch.Tensor | StackedRows,
    bias: torch.Tensor | StackedRows | None = None,
    *,
    out_dtype: torch.dtype | None = None,
    path: KernelPath = "auto",
    num_threads: int | None = None,
    arg_cache: dict[Any, Any] | None = None,
) -> torch.Tensor:
    """x [T, D] bf16 @ weight [N, D].T bf16 (+ bias [N] bf16) with fp32 sums.

    Returns [T, N] float32 when out_dtype is torch.float32 (exact products, fp32 sums, like
    engine.model.logits_fp32), else bf16 rounded once after the fp32 bias add (like F.linear in bf16).
    `weight` (and then `bias`) may be a StackedRows: the product with their row concatenation, uncopied;
    `arg_cache` (a dict the caller keeps) then holds its ctypes pointer arrays between calls.
    """
    import torch

    lib = _lib()
    out_dtype = out_dtype or torch.bfloat16
    assert x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16, (x.dtype, weight.dtype)
    assert x.device.type == "cpu" and weight.device.type == "cpu"
    assert out_dtype in (torch.bfloat16, torch.float32)
    T, D = x.shape
    N = weight.shape[0]
    assert tuple(weight.shape) == (N, D), (weight.shape, x.shape)
    x_c = x.contiguous()
    out = torch.empty((T, N), dtype=out_dtype)
    threads = num_threads if num_threads is not None else kernel_threads()
    if isinstance(weight, StackedRows):
        keep = bias is None or isinstance(bias, StackedRows)
        if bias is not None and not isinstance(bias, StackedRows):
            bias = StackedRows(tuple(bias.to(torch.bfloat16).contiguous().split(list(weight.rows))))
        assert bias is None or bias.dtype == torch.bfloat16, bias.dtype
        ws, bs, ns, n = _stacked_args(weight, bias, arg_cache if keep else None)
        rc = lib.cdll.lk_linear_bf16_multi(_ptr(x_c), ws, bs, ns, n, _ptr(out), T, D,
                                           int(out_dtype == torch.bfloat16), _path_code(path), int(threads))
        _check(rc, "lk_linear_bf16_multi", path)
    else:
        assert not isinstance(bias, StackedRows), "a stacked bias needs a stacked weight"
        w_c = weight.contiguous()
        b_c = bias.to(torch.bfloat16).contiguous() if bias is not None else None
        rc = lib.cdll.lk_linear_bf16(
            _ptr(x_c), _ptr(w_c), _ptr(b_c) if b_c is not None else None, _ptr(out), T, D, N,
            int(out_dtype == torch.bfloat16), _path_code(path), int(threads),
        )
        _check(rc, "lk_linear_bf16", path)
    return out


def attention_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor, sm_scale: float,
    *, path: KernelPath = "auto", num_threads: int | None = None,
) -> torch.Tensor | None:
    """One query against every key given (decode), with sinks: engine.model.attention_one's math.

    q [Hkv, G, d] bf16, k/v [S, Hkv, d] bf16, sinks [Hkv*G] f32 -> [1, Hkv*G*d] bf16: scores are fp32 sums
    of the exact bf16 products, softmax over [scores, sink] in fp32, probs @ v in fp32, one bf16 rounding.
    Returns None where the kernel does not apply (the scalar path, or a head shape it does not take: d a
    multiple of 16 up to 64, G up to 16) or the kernels are unavailable: the caller then uses torch. A path
    this CPU cannot run raises KernelError, as in the other wrappers.
    """
    import torch

    lib, _ = _load()
    if lib is None:
        return None
    hkv, g, d = q.shape
    s = k.shape[0]
    q_c, k_c, v_c = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty((1, hkv * g * d), dtype=torch.bfloat16)
    threads = num_threads if num_threads is not None else kernel_threads()
    rc = lib.cdll.lk_attn_decode(_ptr(q_c), _ptr(k_c), _ptr(v_c), _ptr(sinks), _ptr(out), s, hkv, g, d,
                                 float(sm_scale), _path_code(path), int(threads))
    if rc == _status_code("LK_UNSUPPORTED"):
        return None
    _check(rc, "lk_attn_decode", path)
    return out


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float, *, num_threads: int | None = None) -> torch.Tensor:
    """engine.model.rms_norm natively: x [T, D] bf16, scale [D] f32 -> [T, D] bf16, fp32 statistics."""
    import torch

    lib = _lib()
    assert x.dtype == torch.bfloat16 and scale.dtype == torch.float32, (x.dtype, scale.dtype)
    t, d = x.shape
    x_c, s_c = x.contiguous(), scale.contiguous()
    out = torch.empty((t, d), dtype=torch.bfloat16)
    threads = num_threads if num_threads is not None else kernel_threads()
    _check(lib.cdll.lk_rms_norm(_ptr(x_c), _ptr(s_c), float(eps), _ptr(out), t, d, int(threads)), "lk_rms_norm", "auto")
    return out


def fma_peak(path: KernelPath = "auto", *, num_threads: int | None = None, seconds: float = 0.2,
             repeats: int = 3) -> float:
    """Peak fp32 rate of `path` on this CPU (FLOP/s, an FMA counting 2), best of `repeats` probes of about
    `seconds` each: independent FMA chains in the path's widest registers on `num_threads` threads."""
    import torch

    lib = _lib()
    threads = num_threads if num_threads is not None else torch.get_num_threads()
    rate = ctypes.c_double()
    code = _path_code(path)
    iterations = 20_000
    while True:  # calibrate: a probe of about `seconds` (4 units per thread of `iterations` steps)
        _check(lib.cdll.lk_fma_peak(code, int(threads), iterations, ctypes.byref(rate)), "lk_fma_peak", path)
        took = 4 * threads * iterations * _flops_per_step(code) / max(rate.value, 1.0) / threads
        if took >= seconds / 4 or iterations > 1 << 34:
            break
        iterations *= 4
    iterations = max(1, int(iterations * seconds / max(took, 1e-9)))
    best = 0.0
    for _ in range(repeats):
        _check(lib.cdll.lk_fma_peak(code, int(threads), iterations, ctypes.byref(rate)), "lk_fma_peak", path)
        best = max(best, rate.value)
    return best


def _flops_per_step(code: int) -> float:
    """Flops one probe step does on a path (only to size the probe; the library counts the real ones)."""
    return {"scalar": 16.0, "avx2": 192.0, "avx512": 512.0, "neon": 128.0}.get(_NAMES.get(code, ""), 192.0)


def read_bandwidth(buffer: torch.Tensor, *, num_threads: int | None = None, repeats: int = 3) -> float:
    """Best-of-`repeats` streaming read rate of `buffer` (bytes/s), touching every 64-byte line."""
    import time

    import torch

    lib = _lib()
    n = (buffer.numel() * buffer.element_size()) // 64 * 64
    threads = num_threads if num_threads is not None else torch.get_num_threads()
    checksum = ctypes.c_double()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        rc = lib.cdll.lk_read_bytes(_ptr(buffer), n, int(threads), ctypes.byref(checksum))
        best = min(best, time.perf_counter() - t0)
        _check(rc, "lk_read_bytes", "auto")
    return n / best
