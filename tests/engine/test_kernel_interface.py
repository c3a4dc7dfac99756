"""The seam between Python and the native kernels: lantern_kernels.h read at run time, one _check, and the
status a user sees when the library cannot be used."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import typing

import pytest
import torch

from engine import kernels
from engine.kernels import header

needs_lib = pytest.mark.skipif(not kernels.available(), reason=f"native kernels not built: {kernels.status().reason}")


def test_header_states_the_interface() -> None:
    iface = header.read_interface()
    assert iface.paths == {"auto": 0, "scalar": 1, "avx512": 2, "avx2": 3, "neon": 4}
    assert iface.statuses["LK_OK"] == 0 and iface.statuses["LK_ERR_PATH"] == -2
    moe = iface.functions["lk_moe_experts"]
    assert len(moe.argtypes) == 18 and moe.params[-2:] == ("path", "nthreads")
    assert moe.argtypes[-3] is header.ctypes.c_float and moe.restype is header.ctypes.c_int
    assert iface.functions["lk_read_bytes"].argtypes[-1] is header.ctypes.c_void_p  # double* checksum
    assert iface.functions["lk_abi_version"].argtypes == ()
    # the Python wrappers' path names are the header's
    assert set(typing.get_args(kernels.KernelPath)) == set(iface.paths)


def test_header_reader_rejects_what_it_does_not_know() -> None:
    text = header.HEADER.read_text()
    with pytest.raises(header.HeaderError, match="long"):
        header.parse(text.replace("LK_API int lk_abi_version(void);", "LK_API int lk_abi_version(long x);"))
    with pytest.raises(header.HeaderError, match="LK_ABI_VERSION"):
        header.parse(text.replace("#define LK_ABI_VERSION", "#define LK_ABI"))
    with pytest.raises(header.HeaderError, match="lk_path"):
        header.parse(text.replace("LK_PATH_NEON = 4", "LK_PATH_NEON"))


@needs_lib
def test_library_matches_the_header() -> None:
    """Same ABI version; every header function bound; the library exports nothing else (where nm is here)."""
    lib, _ = kernels._load()
    iface = header.read_interface()
    assert lib.cdll.lk_abi_version() == iface.abi_version
    for name, fn in iface.functions.items():
        assert getattr(lib.cdll, name).argtypes == list(fn.argtypes), name
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm to list the library's exports")
    out = subprocess.run([nm, "-D", "--defined-only", lib.path], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[-1].startswith("lk_")}
    assert exported == set(iface.functions)


@needs_lib
def test_check_names_the_status() -> None:
    kernels._check(0, "lk_x", "auto")
    with pytest.raises(kernels.KernelError, match=r"lk_x failed: LK_ERR_PATH \(code -2, path neon\)"):
        kernels._check(-2, "lk_x", "neon")
    with pytest.raises(ValueError, match="LK_ERR_EXPERT"):
        kernels._check(-3, "lk_moe_experts", "auto")
    with pytest.raises(kernels.KernelError, match="unknown status -9"):
        kernels._check(-9, "lk_x", "auto")


@needs_lib
def test_attention_without_a_kernel_is_none_and_a_foreign_path_raises() -> None:
    q = torch.randn(2, 4, 64).bfloat16()
    k = torch.randn(5, 2, 64).bfloat16()
    sinks = torch.zeros(8)
    assert kernels.attention_decode(q, k, k, sinks, 0.125, path="scalar") is None       # LK_UNSUPPORTED
    other = "avx512" if kernels.path_available("neon") else "neon"
    if not kernels.path_available(other):
        with pytest.raises(kernels.KernelError, match="LK_ERR_PATH"):
            kernels.attention_decode(q, k, k, sinks, 0.125, path=other)
    if kernels.path_available("avx2") or kernels.path_available("neon"):
        odd = torch.randn(2, 4, 24).bfloat16()                                           # d = 24: no kernel
        assert kernels.attention_decode(odd, torch.randn(5, 2, 24).bfloat16(), torch.randn(5, 2, 24).bfloat16(),
                                        sinks, 0.125) is None


@needs_lib
def test_fma_peak_probe() -> None:
    best_path = kernels.runnable_paths()[0]          # the CPU's best, whatever LANTERN_CPU_KERNELS says
    scalar = kernels.fma_peak("scalar", num_threads=1, seconds=0.02, repeats=1)
    best = kernels.fma_peak(best_path, num_threads=1, seconds=0.02, repeats=2)
    assert scalar > 1e8 and best > 0
    if best_path != "scalar":
        assert best > 2 * scalar          # SIMD FMA chains beat the plain scalar multiply-add
    other = "avx512" if kernels.path_available("neon") else "neon"
    if not kernels.path_available(other):
        with pytest.raises(kernels.KernelError, match="LK_ERR_PATH"):
            kernels.fma_peak(other, num_threads=1, seconds=0.01, repeats=1)


@pytest.fixture
def fresh_load(monkeypatch: pytest.MonkeyPatch) -> typing.Iterator[None]:
    """_load() recomputed inside the test and again after it (the real library comes back)."""
    kernels._load.cache_clear()
    kernels._auto_path_for.cache_clear()
    yield
    monkeypatch.undo()
    kernels._load.cache_clear()
    kernels._auto_path_for.cache_clear()


def _assert_reference(reason_part: str) -> None:
    st = kernels.status()
    assert not st.available and st.backend == "cpu-reference" and st.library is None
    assert st.reason and reason_part in st.reason and st.reason.endswith("expect ~25× slower"), st.reason
    assert not kernels.available() and kernels.runnable_paths() == [] and not kernels.path_available("scalar")


def test_status_when_the_library_is_missing(monkeypatch: pytest.MonkeyPatch, fresh_load: None) -> None:
    monkeypatch.delenv(kernels.DISABLE_ENV, raising=False)
    monkeypatch.setattr(kernels, "_library_path", lambda: None)
    _assert_reference("the native kernels are missing (they were not built when Lantern was installed")
    with pytest.raises(kernels.KernelError, match="unavailable"):
        kernels.rms_norm(torch.zeros(1, 4).bfloat16(), torch.ones(4), 1e-5)


def test_status_when_the_library_does_not_load(monkeypatch: pytest.MonkeyPatch, fresh_load: None, tmp_path) -> None:
    bad = tmp_path / "_lantern_kernels.so"
    bad.write_bytes(b"not a library")
    monkeypatch.delenv(kernels.DISABLE_ENV, raising=False)
    monkeypatch.setattr(kernels, "_library_path", lambda: str(bad))
    _assert_reference("the native kernels are missing (_lantern_kernels.so failed to load")


@needs_lib
def test_status_when_the_library_is_stale(monkeypatch: pytest.MonkeyPatch, fresh_load: None) -> None:
    monkeypatch.setattr(kernels, "_INTERFACE", dataclasses.replace(kernels._INTERFACE, abi_version=10_000))
    _assert_reference("is out of date: interface version")


def test_status_when_disabled(monkeypatch: pytest.MonkeyPatch, fresh_load: None) -> None:
    monkeypatch.setenv(kernels.DISABLE_ENV, "1")
    st = kernels.status()
    assert st.backend == "cpu-reference" and st.reason == "the native kernels are disabled by LANTERN_NO_NATIVE=1; expect ~25× slower"


def test_status_when_the_header_is_missing(monkeypatch: pytest.MonkeyPatch, fresh_load: None) -> None:
    monkeypatch.delenv(kernels.DISABLE_ENV, raising=False)
    monkeypatch.setattr(kernels, "_INTERFACE", None)
    monkeypatch.setattr(kernels, "_INTERFACE_PROBLEM", "its interface header lantern_kernels.h could not be read: gone")
    _assert_reference("lantern_kernels.h could not be read")
