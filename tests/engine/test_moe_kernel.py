"""Native MXFP4 MoE kernel (engine/kernels) against a pure-torch rendering of the moe_experts contract.

The reference below is written straight from the HELPERS.md contract (bf16 matmul inputs, fp32
accumulation, fp32 bias/swiglu/weighting, swiglu output rounded to bf16, one final bf16 rounding).
When engine.moe exists, the kernel is also compared against engine.moe.moe_experts itself.
"""

from __future__ import annotations

import pytest
import torch

from engine import kernels
from engine.moe import PackedExperts as Packed

pytestmark = pytest.mark.skipif(not kernels.available(), reason=f"native kernels not built: {kernels.status().reason}")

FP4 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def make_experts(E: int, D: int, I: int, gen: torch.Generator) -> Packed:
    def blocks(rows: int, cols: int) -> torch.Tensor:
        return torch.randint(0, 256, (E, rows, cols // 32, 16), dtype=torch.uint8, generator=gen)

    def scales(rows: int, cols: int) -> torch.Tensor:  # around 2^-6 .. 2^-3, like real checkpoints
        return torch.randint(121, 125, (E, rows, cols // 32), dtype=torch.uint8, generator=gen)

    return Packed(
        blocks(2 * I, D), scales(2 * I, D), (torch.randn(E, 2 * I, generator=gen) * 0.5).bfloat16(),
        blocks(D, I), scales(D, I), (torch.randn(E, D, generator=gen) * 0.5).bfloat16(),
    )


def dequant(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[R, G, 16] u8 + [R, G] u8 -> [R, G*32] float32 exact values."""
    lo = FP4[(blocks & 0x0F).long()]
    hi = FP4[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).reshape(*blocks.shape[:-1], 32)  # element 2j = low nibble
    vals = torch.ldexp(vals, scales.to(torch.int32).unsqueeze(-1) - 127)
    return vals.reshape(blocks.shape[0], -1)


def reference(h: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, ex: Packed, limit: float,
              halves: bool = False) -> torch.Tensor:
    T, D = h.shape
    K = idx.shape[1]
    ys = torch.zeros(T, K, D, dtype=torch.float32)
    for e in idx.unique().tolist():
        tok, slot = (idx == e).nonzero(as_tuple=True)
        w1 = dequant(ex.mlp1_blocks[e], ex.mlp1_scales[e])  # [2I, D]
        w2 = dequant(ex.mlp2_blocks[e], ex.mlp2_scales[e])  # [D, I]
        u = h[tok].float() @ w1.T + ex.mlp1_bias[e].float()  # [n, 2I]
        g, lin = (u.chunk(2, dim=1) if halves else (u[:, 0::2], u[:, 1::2]))   # halves: negative control only
        g, lin = g.clamp(max=limit), lin.clamp(-limit, limit)
        a = (g * torch.sigmoid(1.702 * g) * (lin + 1)).bfloat16().float()  # [n, I]
        ys[tok, slot] = a @ w2.T + ex.mlp2_bias[e].float()  # [n, D]
    out = torch.zeros(T, D, dtype=torch.float32)
    for k in range(K):
        out = out + w[:, k : k + 1] * ys[:, k]
    return out.bfloat16()


def inputs(T: int, K: int, E: int, D: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = torch.randn(T, D, generator=gen).bfloat16()
    idx = torch.stack([torch.randperm(E, generator=gen)[:K] for _ in range(T)])
    w = torch.softmax(torch.randn(T, K, generator=gen), dim=-1)
    return h, idx, w


def assert_close_bf16(got: torch.Tensor, want: torch.Tensor, min_identical: float) -> None:
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    g, r = got.float(), want.float()
    assert torch.isfinite(g).all()
    identical = (got.view(torch.int16) == want.view(torch.int16)).float().mean().item()
    # Summation order only: at most one bf16 step (2^-8 relative) apart, plus a floor for cancellation.
    tol = r.abs() * 2.0**-7 + r.abs().max() * 2.0**-12
    bad = ((g - r).abs() > tol).sum().item()
    assert bad == 0, f"{bad} elements beyond summation-order noise; max diff {(g - r).abs().max().item()}"
    assert identical >= min_identical, f"only {identical:.4f} of elements bit-identical"


CASES = [  # T, K, E, D, I
    (1, 4, 8, 2880, 2880),
    (5, 4, 6, 2880, 2880),
    (1, 1, 2, 96, 64),
    (7, 2, 4, 160, 96),
    (33, 4, 8, 128, 256),
    (64, 4, 4, 256, 160),
    (40, 4, 8, 2880, 2880),   # ~20 tokens per expert at full width (prefill tiles)
    (2, 1, 1, 160, 96),       # exactly 2 / 3 tokens per expert (few-token tiles), odd block counts
    (3, 2, 2, 160, 96),
]


def skip_unless_cpu_runs(path: str) -> None:
    if not kernels.path_available(path):
        pytest.skip(f"CPU cannot run the {path} kernels")


@pytest.mark.parametrize("path", ["avx512", "avx2", "neon", "scalar"])
@pytest.mark.parametrize(("T", "K", "E", "D", "I"), CASES)
def test_kernel_matches_contract(path: str, T: int, K: int, E: int, D: int, I: int) -> None:
    skip_unless_cpu_runs(path)
    gen = torch.Generator().manual_seed(T * 1000 + D + I + K)
    ex = make_experts(E, D, I, gen)
    h, idx, w = inputs(T, K, E, D, gen)
    want = reference(h, idx, w, ex, 7.0)
    got = kernels.moe_experts(h, idx, w, ex, 7.0, path=path)
    assert_close_bf16(got, want, min_identical=0.97)


@pytest.mark.auto_path
def test_swiglu_limit_is_applied() -> None:
    """Large activations: the clamp decides the result, so a missing/misplaced clamp shows."""
    gen = torch.Generator().manual_seed(5)
    E, D, I = 2, 64, 64
    ex = make_experts(E, D, I, gen)
    ex.mlp1_scales.fill_(130)  # |u| in the hundreds
    h, idx, w = inputs(9, 2, E, D, gen)
    for limit in (7.0, 3.0):
        want = reference(h, idx, w, ex, limit)
        got = kernels.moe_experts(h, idx, w, ex, limit)
        assert_close_bf16(got, want, min_identical=0.97)
    assert not torch.equal(kernels.moe_experts(h, idx, w, ex, 7.0), kernels.moe_experts(h, idx, w, ex, 3.0))


@pytest.mark.auto_path
def test_threads_do_not_change_results() -> None:
    gen = torch.Generator().manual_seed(11)
    ex = make_experts(4, 256, 128, gen)
    h, idx, w = inputs(12, 4, 4, 256, gen)
    one = kernels.moe_experts(h, idx, w, ex, 7.0, num_threads=1)
    two = kernels.moe_experts(h, idx, w, ex, 7.0, num_threads=2)
    assert torch.equal(one.view(torch.int16), two.view(torch.int16))


def test_bad_expert_index_raises() -> None:
    gen = torch.Generator().manual_seed(3)
    ex = make_experts(2, 64, 64, gen)
    h, idx, w = inputs(2, 1, 2, 64, gen)
    idx[1, 0] = 2
    with pytest.raises(ValueError):
        kernels.moe_experts(h, idx, w, ex, 7.0)


@pytest.mark.auto_path
def test_matches_engine_moe_when_present() -> None:
    moe = pytest.importorskip("engine.moe")
    gen = torch.Generator().manual_seed(21)
    E, D, I = 4, 2880, 2880
    ex = make_experts(E, D, I, gen)
    h, idx, w = inputs(3, 4, E, D, gen)
    want = moe.moe_experts_torch(h, idx, w, ex, 7.0)  # the pure-torch path (moe_experts itself would be native)
    got = kernels.moe_experts(h, idx, w, ex, 7.0)
    assert_close_bf16(got, want, min_identical=0.97)


def test_backend_reports_native_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.backends import select_device

    monkeypatch.delenv(kernels.PATH_ENV, raising=False)
    choice = select_device("cpu")
    assert choice.backend in ("cpu-avx512", "cpu-avx2", "cpu-neon", "cpu-scalar")
    assert (choice.backend_reason is None) == (choice.backend in ("cpu-avx512", "cpu-neon"))
    assert (choice.backend == "cpu-avx512") == kernels.path_available("avx512")
    off = select_device("cpu", "cpu-reference")
    assert off.backend == "cpu-reference" and off.backend_reason


@pytest.mark.auto_path
def test_deinterleaved_reference_disagrees() -> None:
    """Negative control: the comparison above can fail (gate/up taken as halves instead of even/odd rows)."""
    gen = torch.Generator().manual_seed(8)
    ex = make_experts(4, 128, 128, gen)
    h, idx, w = inputs(6, 2, 4, 128, gen)
    got = kernels.moe_experts(h, idx, w, ex, 7.0)
    assert_close_bf16(got, reference(h, idx, w, ex, 7.0), min_identical=0.97)
    wrong = reference(h, idx, w, ex, 7.0, halves=True)
    assert (got.float() - wrong.float()).abs().max() > 0.1 * got.float().abs().max()


@pytest.mark.parametrize("path", ["avx512", "avx2", "neon"])
def test_prefill_tiles_with_unusual_scales_match_contract(path: str) -> None:
    """Many tokens per expert with some block scales outside 2..252 (the folded-scale tiles must step aside)."""
    skip_unless_cpu_runs(path)
    gen = torch.Generator().manual_seed(7)
    ex = make_experts(2, 256, 160, gen)
    ex.mlp1_scales[0, 5, 2] = 1      # a row block with scale 2^-126
    ex.mlp2_scales[1, 100, 0] = 253  # and one with 2^126 (times tiny activations stays finite)
    ex.mlp2_blocks[1, 100, 0].zero_()
    h, idx, w = inputs(48, 2, 2, 256, gen)
    want = reference(h, idx, w, ex, 7.0)
    got = kernels.moe_experts(h, idx, w, ex, 7.0, path=path)
    assert_close_bf16(got, want, min_identical=0.97)


@pytest.mark.parametrize("path", ["avx2", "avx512", "neon", "scalar"])
@pytest.mark.parametrize("T", [1, 24])   # decode tiles, and the folded prefill tiles stepping aside
def test_unusual_scales_match_contract(path: str, T: int) -> None:
    """E8M0 scales 0 (2^-127, a denormal), 1, 253 and 254 give the contract's values on every path.

    Every mlp1 row's first block has scale 0 or 1 and meets activations around 1e36, so those blocks add
    O(0.1..1) to u: a path that flushed 2^-127 to zero (or mis-scaled it) is caught. One block with scale 253
    holds a single 0.5 that meets an activation near 1e-37 (0.5 * 2^126 * 1e-37 ~ 4); one with 254 holds only
    -0.0 (no NaN from 0 * huge). D = 160 and I = 96 have odd block counts (the AVX2 path's lone last block).
    """
    skip_unless_cpu_runs(path)
    gen = torch.Generator().manual_seed(17 + T)
    E, D, I = 2, 160, 96
    ex = make_experts(E, D, I, gen)
    ex.mlp1_scales[:, :, 0] = torch.randint(0, 2, (E, 2 * I), dtype=torch.uint8, generator=gen)
    ex.mlp1_scales[:, 9, 2] = 253
    ex.mlp1_blocks[:, 9, 2] = 0
    ex.mlp1_blocks[:, 9, 2, 0] = 0x01      # element 64 = 0.5, the rest of the block 0
    ex.mlp1_scales[:, 7, 1] = 254
    ex.mlp1_blocks[:, 7, 1] = 0x88         # -0.0 everywhere
    ex.mlp2_scales[:, 10, 2] = 253
    ex.mlp2_blocks[:, 10, 2] = 0
    ex.mlp2_scales[:, 11, 0] = 0
    ex.mlp2_scales[:, 12, 1] = 1
    h, idx, w = inputs(T, 2, E, D, gen)
    h[:, :32] = (torch.randn(T, 32, generator=gen) * 2e36).bfloat16()
    sign = torch.randint(0, 2, (T,), generator=gen) * 2 - 1   # normal bf16 values (vdpbf16ps flushes denormals)
    h[:, 64] = (sign * (1 + torch.rand(T, generator=gen)) * 1e-37).bfloat16()
    want = reference(h, idx, w, ex, 7.0)
    got = kernels.moe_experts(h, idx, w, ex, 7.0, path=path)
    assert_close_bf16(got, want, min_identical=0.97)
    # negative control: the tiny-scale blocks really matter at this tolerance (flushing them is caught)
    ex.mlp1_blocks[:, :, 0] = 0
    flushed = reference(h, idx, w, ex, 7.0).float()
    assert ((flushed - want.float()).abs() > want.float().abs() * 2.0**-7 + want.float().abs().max() * 2.0**-12).any()


# The kinds of CPU the override tests run on: this one, and smaller ones simulated on it (the library then
# acts as if the CPU lacked the hidden instruction sets: detection, path="auto", status and explicit requests).
CPU_KINDS = {"this CPU": (), "AVX2-only CPU": ("avx512",), "CPU without SIMD kernels": ("avx512", "avx2", "neon")}


@pytest.fixture(params=list(CPU_KINDS))
def cpu_kind(request: pytest.FixtureRequest) -> str:
    hidden = CPU_KINDS[request.param]
    if request.param == "AVX2-only CPU":
        if not kernels.path_available("avx2"):
            pytest.skip("simulating an AVX2-only CPU needs a CPU with AVX2")
        if not kernels.path_available("avx512"):
            pytest.skip("this CPU is an AVX2-only one (covered by 'this CPU')")
    with kernels.simulate_cpu_without(*hidden):
        yield request.param


def test_path_override_env(monkeypatch: pytest.MonkeyPatch, cpu_kind: str) -> None:
    """LANTERN_CPU_KERNELS decides what path="auto" runs, and status() names it whether the path it asks for is
    forced (not the CPU's best), the best anyway, or one the CPU cannot run (then the best runs)."""
    gen = torch.Generator().manual_seed(4)
    ex = make_experts(2, 2880, 2880, gen)          # D = 2880: a wrong layout would not go unnoticed
    h, idx, w = inputs(1, 2, 2, 2880, gen)
    monkeypatch.delenv(kernels.PATH_ENV, raising=False)
    best = kernels.status().backend
    for path in ("avx512", "avx2", "neon", "scalar"):
        monkeypatch.setenv(kernels.PATH_ENV, path)
        st = kernels.status()
        assert st.reason and f"{kernels.PATH_ENV}={path}" in st.reason, (cpu_kind, path, st)
        if not kernels.path_available(path):
            assert st.backend == best and "cannot run" in st.reason, (cpu_kind, path, st)
            with pytest.raises(RuntimeError, match="code -2"):
                kernels.moe_experts(h, idx, w, ex, 7.0, path=path)
            continue
        assert st.backend == f"cpu-{path}", (cpu_kind, path, st)
        assert ("anyway" in st.reason) == (st.backend == best) and ("forced" in st.reason) == (st.backend != best)
        auto = kernels.moe_experts(h, idx, w, ex, 7.0)
        assert torch.equal(auto.view(torch.int16), kernels.moe_experts(h, idx, w, ex, 7.0, path=path).view(torch.int16))
    monkeypatch.setenv(kernels.PATH_ENV, "bogus")
    st = kernels.status()
    assert st.backend == best and "bogus" in (st.reason or "")


def test_simulated_avx2_only_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU that showed the red test (AVX2 + FMA, no AVX-512), on this one: what auto runs and what status says."""
    if not (kernels.path_available("avx2") and kernels.path_available("avx512")):
        pytest.skip("needs a CPU with AVX-512 BF16 to simulate one without it")
    monkeypatch.delenv(kernels.PATH_ENV, raising=False)
    with kernels.simulate_cpu_without("avx512"):
        st = kernels.status()
        assert st.backend == "cpu-avx2" and st.reason == "this CPU lacks AVX-512 BF16, so the AVX2 kernels are in use"
        assert kernels._path_code("auto") == 3 and not kernels.path_available("avx512")
        assert kernels.runnable_paths() == ["avx2", "scalar"]
        monkeypatch.setenv(kernels.PATH_ENV, "avx2")       # the case that broke: forced, and the best anyway
        st = kernels.status()
        assert st.backend == "cpu-avx2"
        assert st.reason == "cpu-avx2 chosen by LANTERN_CPU_KERNELS=avx2 (the best this CPU runs anyway: it lacks AVX-512 BF16)"
        monkeypatch.setenv(kernels.PATH_ENV, "avx512")
        st = kernels.status()
        assert st.backend == "cpu-avx2" and "cannot run" in (st.reason or "")
    monkeypatch.delenv(kernels.PATH_ENV)
    assert kernels.status().backend == "cpu-avx512" and kernels.path_available("avx512")   # restored


def test_path_override_the_cpu_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status logic on its own (library answers faked, any architecture): an AVX2-only CPU asked for avx512."""

    class Cdll:
        @staticmethod
        def lk_best_path() -> int:
            return 3

        @staticmethod
        def lk_path_available(p: int) -> int:
            return int(p in (1, 3))

    class Lib:
        cdll = Cdll()
        path = "fake.so"

    monkeypatch.setattr(kernels, "_load", lambda: (Lib(), None))
    kernels._auto_path_for.cache_clear()
    try:
        monkeypatch.delenv(kernels.PATH_ENV, raising=False)
        st = kernels.status()
        assert st.backend == "cpu-avx2" and st.reason == "this CPU lacks AVX-512 BF16, so the AVX2 kernels are in use"
        monkeypatch.setenv(kernels.PATH_ENV, "avx512")
        st = kernels.status()
        assert st.backend == "cpu-avx2" and "cannot run" in (st.reason or "") and kernels.PATH_ENV in st.reason
        monkeypatch.setenv(kernels.PATH_ENV, "avx2")
        st = kernels.status()
        assert st.backend == "cpu-avx2" and "anyway" in (st.reason or "") and kernels.PATH_ENV in st.reason
        assert kernels._path_code("auto") == 3 and not kernels.path_available("avx512")
    finally:
        kernels._auto_path_for.cache_clear()


def test_path_of_another_architecture_is_refused() -> None:
    """path="neon" on x86-64 (or "avx512"/"avx2" on AArch64) is an error, never a silent scalar run."""
    others = ["avx512", "avx2"] if kernels.path_available("neon") else ["neon"]
    gen = torch.Generator().manual_seed(4)
    ex = make_experts(2, 64, 64, gen)
    h, idx, w = inputs(2, 1, 2, 64, gen)
    for other in others:
        with pytest.raises(RuntimeError, match="code -2"):
            kernels.moe_experts(h, idx, w, ex, 7.0, path=other)
        with pytest.raises(RuntimeError, match="code -2"):
            kernels.linear_bf16(h, h[:1].repeat(3, 1), path=other)
