"""`python -m engine.bench.paths [--threads 2] [--paths avx512,avx2,scalar]`: native kernel paths side by side.

Times, per path, one gpt-oss-20b layer's experts for one token (D = I = 2880, 4 of 32 experts, rotated
so the weights come from DRAM), the 2880 x 201088 bf16 unembedding matvec, a 64-token prefill of the
expert block and of the qkv projection (5120 x 2880); prints GB/s of weights read for the one-token calls and
GFLOP/s for the prefill ones next to the path's fp32 FMA peak (probed). Random weights, nothing saved.
"""

from __future__ import annotations

import argparse
import time

import torch

from engine import kernels
from engine.bench.run import cpu_name
from engine.moe import PackedExperts

D = I = 2880
E, K = 32, 4
VOCAB = 201088


def _experts(gen: torch.Generator) -> PackedExperts:
    return PackedExperts(
        torch.randint(0, 256, (E, 2 * I, D // 32, 16), dtype=torch.uint8, generator=gen),
        torch.randint(118, 126, (E, 2 * I, D // 32), dtype=torch.uint8, generator=gen),
        torch.randn(E, 2 * I, generator=gen).bfloat16(),
        torch.randint(0, 256, (E, D, I // 32, 16), dtype=torch.uint8, generator=gen),
        torch.randint(118, 126, (E, D, I // 32), dtype=torch.uint8, generator=gen),
        torch.randn(E, D, generator=gen).bfloat16(),
    )


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", default="avx512,avx2,scalar")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    ex = _experts(gen)
    per_expert = sum(t[0].numel() for t in (ex.mlp1_blocks, ex.mlp1_scales, ex.mlp2_blocks, ex.mlp2_scales))
    h1 = torch.randn(1, D, generator=gen).bfloat16()
    w1 = torch.softmax(torch.randn(1, K, generator=gen), -1)
    h64 = torch.randn(64, D, generator=gen).bfloat16()
    idx64 = torch.stack([torch.randperm(E, generator=gen)[:K] for _ in range(64)])
    w64 = torch.softmax(torch.randn(64, K, generator=gen), -1)
    unemb = (torch.randn(VOCAB, D, generator=gen) * 0.02).bfloat16()
    qkv = unemb[:5120]                                                    # [5120, 2880] bf16, like qkv
    print(f"cpu: {cpu_name()}   kernels: {kernels.status().backend}")
    print(f"threads={args.threads}  read bandwidth {kernels.read_bandwidth(unemb, num_threads=args.threads) / 1e9:.1f} GB/s")
    for path in args.paths.split(","):
        if not kernels.path_available(path):  # type: ignore[arg-type]
            print(f"{path:7s} not available on this CPU")
            continue
        slow = path == "scalar"
        reps = 1 if slow else args.repeats
        state = {"i": 0}

        def decode() -> None:
            for _ in range(8):  # 8 different expert sets per timing: 8 x 4 x 13.2 MB from DRAM
                e0 = (state["i"] * K) % E
                state["i"] += 1
                idx = torch.arange(e0, e0 + K).view(1, K)
                kernels.moe_experts(h1, idx, w1, ex, 7.0, path=path, num_threads=args.threads)  # type: ignore[arg-type]

        t = _best(decode, reps) / 8
        moe_gbs = K * per_expert / t / 1e9
        t_lin = _best(lambda: kernels.linear_bf16(h1, unemb, None, out_dtype=torch.float32, path=path,  # type: ignore[arg-type]
                                                  num_threads=args.threads), reps)
        lin_gbs = unemb.numel() * 2 / t_lin / 1e9
        t_pre = _best(lambda: kernels.moe_experts(h64, idx64, w64, ex, 7.0, path=path,  # type: ignore[arg-type]
                                                  num_threads=args.threads), 1 if slow else 3)
        t_qkv = _best(lambda: kernels.linear_bf16(h64, qkv, None, path=path,  # type: ignore[arg-type]
                                                  num_threads=args.threads), 1 if slow else 3)
        peak = kernels.fma_peak(path, num_threads=args.threads) / 1e9  # type: ignore[arg-type]
        moe_gflops = 2 * 64 * K * 3 * D * I / t_pre / 1e9
        qkv_gflops = 2 * 64 * qkv.shape[0] * D / t_qkv / 1e9
        print(f"{path:7s} experts 1 tok: {t * 1e3:7.2f} ms {moe_gbs:6.1f} GB/s | unembedding matvec: "
              f"{t_lin * 1e3:7.1f} ms {lin_gbs:6.1f} GB/s | prefill 64 tok: experts {t_pre * 1e3:7.1f} ms "
              f"{moe_gflops:6.1f} GFLOP/s, qkv {t_qkv * 1e3:6.1f} ms {qkv_gflops:6.1f} GFLOP/s | fp32 FMA peak "
              f"{peak:6.1f} GFLOP/s (experts {100 * moe_gflops / peak:3.0f} %, qkv {100 * qkv_gflops / peak:3.0f} %)")


if __name__ == "__main__":
    main()
