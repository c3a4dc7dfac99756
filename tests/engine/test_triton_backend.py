"""The cuda-triton backend's kernels and whole model: compiled on a GPU when there is one, else on the CPU
under Triton's interpreter (make test).

Kernels against the pure-torch reference ops (same math; fp32 summation order aside, so bf16 outputs agree
bit for bit except rare 1-ulp flips), the model against both oracles with test_parity's criteria on both
layouts, greedy tokens against the CPU path, and the fixed-shape decode step (what the CUDA graph captures)
against the plain forward, with a check that it never reads a device value on the host.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

from engine.backends import reference as ref  # noqa: E402
from engine.backends import select  # noqa: E402
from engine.kv_cache import KVCache  # noqa: E402
from engine.model import Transformer  # noqa: E402
from engine.moe import PackedExperts, moe_experts_torch  # noqa: E402
from tests.engine.test_parity import SEQ_LEN, oracles_for, prompt, typical_diff  # noqa: E402
from tests.engine.greedy import greedy_tokens  # noqa: E402

tk = pytest.importorskip("engine.backends.triton_kernels")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _triton() -> object:
    choice = select(DEV, "cuda-triton")
    assert choice.fallback_reason is None, choice.fallback_reason
    return choice.backend


def _bf16_close(got: torch.Tensor, want: torch.Tensor, identical: float = 0.97) -> None:
    got, want = got.float().cpu(), want.float().cpu()
    assert ((got - want).abs() <= want.abs() * 2.0**-7 + 1e-5).all(), (got - want).abs().max()
    assert (got == want).float().mean().item() >= identical


def _experts(e: int, d: int, i: int, seed: int) -> PackedExperts:
    g = torch.Generator().manual_seed(seed)

    def packed(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(0, 256, (*shape, 16), generator=g, dtype=torch.int32).to(torch.uint8),
                torch.randint(118, 125, shape, generator=g, dtype=torch.int32).to(torch.uint8))

    b1, s1 = packed(e, 2 * i, d // 32)
    b2, s2 = packed(e, d, i // 32)
    return PackedExperts(b1, s1, (torch.randn(e, 2 * i, generator=g) * 3).bfloat16(), b2, s2,
                         (torch.randn(e, d, generator=g) * 0.1).bfloat16())


def _on(x: PackedExperts | torch.Tensor, dev: str = DEV):  # noqa: ANN202
    if isinstance(x, PackedExperts):
        return PackedExperts(*(t.to(dev) for t in (x.mlp1_blocks, x.mlp1_scales, x.mlp1_bias, x.mlp2_blocks,
                                                   x.mlp2_scales, x.mlp2_bias)))
    return x.to(dev)


@pytest.mark.parametrize(("t", "e", "k", "d", "i"), [(1, 4, 2, 64, 96), (1, 8, 4, 96, 64), (9, 4, 2, 64, 96),
                                                     (12, 8, 4, 96, 64)])
def test_moe_kernels_match_the_reference(t: int, e: int, k: int, d: int, i: int) -> None:
    ex = _experts(e, d, i, seed=t + e)
    g = torch.Generator().manual_seed(t)
    h = (torch.randn(t, d, generator=g) * 2).bfloat16()
    idx = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(t)])
    w = torch.softmax(torch.randn(t, k, generator=g), -1)
    want = moe_experts_torch(h, idx, w, ex, 7.0)
    exd, hd, idxd, wd = _on(ex), _on(h), _on(idx), _on(w)
    run = tk.moe_decode if t == 1 else tk.moe_grouped
    got = run(hd, idxd, wd, exd, 7.0)
    _bf16_close(got, want)
    if t > 1:                                      # the grouped kernel also serves a single token
        _bf16_close(tk.moe_grouped(hd[:1], idxd[:1], wd[:1], exd, 7.0), want[:1])
    # negative control: a different routing changes the output
    assert not torch.equal(run(hd, (idxd + 1) % e, wd, exd, 7.0), got)


def test_grouping_covers_every_pair_once_in_tiles_of_one_expert() -> None:
    idx = torch.tensor([[3, 0], [3, 1], [0, 3], [2, 3]])
    row_pair, tile_expert = tk.group_by_expert(idx, 5, 4)
    flat = idx.reshape(-1)
    pairs = row_pair[row_pair >= 0]
    assert sorted(pairs.tolist()) == list(range(8))
    for tile, e in enumerate(tile_expert.tolist()):
        rows = row_pair[tile * 4:(tile + 1) * 4]
        rows = rows[rows >= 0]
        if e < 5:
            assert (flat[rows.long()] == e).all()
        else:
            assert rows.numel() == 0


def _attn_case(t: int, past: int, hkv: int = 2, g: int = 4, d: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = past + t
    q = torch.randn(t, hkv, g, d, generator=gen).bfloat16()
    k = (torch.randn(s, hkv, d, generator=gen) * 2).bfloat16()
    v = torch.randn(s, hkv, d, generator=gen).bfloat16()
    return q, k, v, torch.randn(hkv * g, generator=gen) + 1.0


@pytest.mark.parametrize(("t", "past", "window"), [(24, 0, None), (37, 0, 8), (40, 30, 16), (30, 150, 128),
                                                   (20, 5, None)])
def test_prefill_attention_matches_the_reference(t: int, past: int, window: int | None) -> None:
    q, k, v, sinks = _attn_case(t, past)
    qp, kp = torch.arange(past, past + t), torch.arange(past + t)
    want = ref.attention(q, k, v, sinks, qp, kp, window, 0.125)
    q, k, v, sinks = _on(q), _on(k), _on(v), _on(sinks)
    _bf16_close(tk.attention_prefill(q, k, v, sinks, past, 0, window, 0.125), want, identical=0.99)
    if window:                                     # one key too few must be caught
        narrow = tk.attention_prefill(q, k, v, sinks, past, 0, window - 1, 0.125).float().cpu()
        assert not ((narrow - want.float()).abs() <= want.float().abs() * 2.0**-7 + 1e-5).all()


@pytest.mark.parametrize("s", [1, 33, 300])
def test_decode_attention_matches_the_reference(s: int) -> None:
    q, k, v, sinks = _attn_case(1, s - 1, hkv=8, g=8, seed=s)
    want = ref.attention_one(q, k, v, sinks, 0.125)
    _bf16_close(tk.attention_decode(_on(q), _on(k), _on(v), _on(sinks), 0.125), want, identical=0.99)
    # the same keys in a ring buffer with device-side positions and the window mask
    ring = 19
    kb, vb = torch.zeros(ring, 8, 64).bfloat16(), torch.zeros(ring, 8, 64).bfloat16()
    pos = s - 1
    for p in range(max(0, pos - ring + 1), pos + 1):
        kb[p % ring], vb[p % ring] = k[p], v[p]
    slots = torch.arange(ring)
    kpos = pos - (pos - slots) % ring
    kpos = torch.where(kpos >= 0, kpos, pos + 1)
    win = min(8, s)
    got = tk.attention_decode(_on(q), _on(kb), _on(vb), _on(sinks), 0.125, _on(torch.tensor([pos])), _on(kpos), win)
    _bf16_close(got, ref.attention_one(q, k[pos - win + 1:], v[pos - win + 1:], sinks, 0.125), identical=0.99)


@pytest.mark.parametrize("t", [1, 5])
def test_rms_norm_and_rope_kernels_match_torch(t: int) -> None:
    from engine.rope import Rope, apply_rope
    from tests.engine.test_numerics import GPT_OSS_20B

    g = torch.Generator().manual_seed(t)
    x = (torch.randn(t, 2880, generator=g) * 3).bfloat16()
    scale = torch.rand(2880, generator=g) + 0.5
    want = ref.rms_norm(x, scale, 1e-5)
    got = tk.rms_norm(_on(x), _on(scale), 1e-5)
    _bf16_close(got, want, identical=0.99)
    assert not torch.equal(tk.rms_norm(_on(x), _on(scale * 1.01), 1e-5).cpu(), got.cpu())
    qkv = (torch.randn(t, 5120, generator=g) * 2).bfloat16()
    qk = qkv[:, :4608].reshape(t, 72, 64)                           # strided rows, as the model passes it
    cos, sin = Rope(GPT_OSS_20B).cos_sin(torch.arange(100, 100 + t), torch.bfloat16)
    want = apply_rope(qk, cos, sin)
    got = tk.rope(_on(qk), _on(cos), _on(sin)).cpu()
    assert (got == want).float().mean().item() >= 0.999              # the same bf16 roundings, op for op
    assert not torch.equal(tk.rope(_on(qk), _on(sin), _on(cos)).cpu(), got)


# ---- the whole model -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["w8-e4k2-l2", "w16-e8k4-l4"])
def test_model_logits_match_both_oracles_on_both_layouts(name: str, model_dir_for: Callable[[str], Path]) -> None:
    pytest.importorskip("transformers")          # (the GPU machine has no transformers: test_gpu.py there)
    root = model_dir_for(name)
    tokens = prompt(SEQ_LEN[name])
    be = _triton()
    model = Transformer.from_checkpoint(root, backend=be)
    assert_same_weights(model, Transformer.from_checkpoint(root / "original", backend=be))
    ours = model(torch.tensor(tokens)).cpu()
    o = oracles_for(root, tokens)
    print(f"\n[triton {name}] q75 ours-ref={typical_diff(ours, o.ref):.4f} tol={o.typical_tol:.4f}")
    o.assert_matches(ours)


def assert_same_weights(a: Transformer, b: Transformer) -> None:
    """Both layouts placed by one backend hold identical tensors (so the deterministic forward passes give
    bit-identical logits: one forward per layout is not needed)."""
    def flat(m: Transformer) -> list[torch.Tensor]:
        out = [m.embedding, m.norm, m.unembedding]
        for layer in m.layers:
            for t in (layer.attn_norm, layer.qkv_w, layer.qkv_b, layer.sinks, layer.out_w, layer.out_b,
                      layer.mlp_norm, layer.gate_w, layer.gate_b, *vars_of(layer.experts)):
                out.append(t.cat() if hasattr(t, "cat") else t)
        return out

    ta, tb = flat(a), flat(b)
    assert len(ta) == len(tb) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(ta, tb))
    assert [layer.window for layer in a.layers] == [layer.window for layer in b.layers]


def vars_of(ex: PackedExperts) -> tuple[torch.Tensor, ...]:
    return (ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, ex.mlp2_blocks, ex.mlp2_scales, ex.mlp2_bias)



def test_greedy_tokens_match_the_cpu_path(tiny_model_dir: Path) -> None:
    prompt_ids = torch.tensor(prompt(11, seed=4))
    cpu = Transformer.from_checkpoint(tiny_model_dir, backend=select("cpu", "cpu-reference").backend)
    tri = Transformer.from_checkpoint(tiny_model_dir, backend=_triton())
    assert greedy_tokens(tri, prompt_ids, 4) == greedy_tokens(cpu, prompt_ids, 4)


class _NoHostReads(TorchDispatchMode):
    """Fails on every op that copies a device value to the host (item, tolist, nonzero, unique, ...)."""

    FORBIDDEN = ("_local_scalar_dense", "nonzero", "unique", "masked_select", "bincount", "repeat_interleave")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func.__name__ if hasattr(func, "__name__") else str(func)
        assert not any(f in str(func) for f in self.FORBIDDEN), f"host read in the decode step: {name}"
        return func(*args, **(kwargs or {}))


def test_fixed_shape_decode_step_matches_the_forward_and_reads_nothing_on_the_host(
        model_dir_for: Callable[[str], Path]) -> None:
    """The step a CUDA graph captures: cache.update_at + device-side masks over whole (ring) buffers."""
    model = Transformer.from_checkpoint(model_dir_for("w8-e4k2-l2"), backend=_triton())
    tokens = torch.tensor(prompt(17, seed=5), device=DEV)     # window 8: the ring (8 + slack) holds all 17
    full = model(tokens)
    cache = KVCache(model.config, 24, device=DEV)
    model(tokens[:12], cache)
    steps = []
    for n in range(12, 17):
        pos = torch.tensor([cache.length], device=DEV)
        if n == 12:
            with _NoHostReads():
                steps.append(model.decode_at(tokens[n:n + 1], pos, cache))
        else:
            steps.append(model.decode_at(tokens[n:n + 1], pos, cache))
        cache.length += 1
    got = torch.cat(steps)
    assert (got - full[12:]).abs().max().item() < 0.03
    assert got.argmax(-1).tolist() == full[12:].argmax(-1).tolist()


def test_no_host_reads_check_can_fail() -> None:
    with pytest.raises(AssertionError, match="host read"):
        with _NoHostReads():
            torch.tensor([3]).item()


def test_kernels_compile_for_the_gpu_ahead_of_time(tmp_path: Path) -> None:
    """Every kernel through Triton's full compiler to an sm_90 (H100/H200) cubin, no GPU needed."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "tests.engine.triton_aot", "90"], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert len(lines) == 12 and all("cubin=0" not in line for line in lines), r.stdout
