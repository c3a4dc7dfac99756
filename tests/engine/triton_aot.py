"""Compile every cuda-triton kernel ahead of time for an NVIDIA architecture, with no GPU present:
Triton's front end, its MLIR passes, LLVM and ptxas (bundled with Triton) all run, so errors that the
interpreter cannot see (a non-constexpr global, a type mismatch, a tl.dot shape) fail here.

`python -m tests.engine.triton_aot 90` (run with TRITON_INTERPRET=0) prints one line per kernel.
"""

from __future__ import annotations

import os
import sys

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from engine.backends import triton_kernels as tk  # noqa: E402

D, I, E, K = 2880, 2880, 32, 4           # gpt-oss-20b shapes
MOE_DECODE = {"b1_ptr": "*u8", "s1_ptr": "*u8", "bias1_ptr": "*bf16", "act_ptr": "*bf16", "limit": "fp32"}
KERNELS = [
    (tk._moe_decode_up, {"h_ptr": "*bf16", "idx_ptr": "*i64", **MOE_DECODE},
     dict(D=D, I=I, BN=tk._DECODE_UP_BN, BK=tk._DECODE_BK)),
    (tk._moe_decode_down, {"act_ptr": "*bf16", "idx_ptr": "*i64", "w_ptr": "*fp32", "b2_ptr": "*u8", "s2_ptr": "*u8",
                           "bias2_ptr": "*bf16", "out_ptr": "*bf16"},
     dict(K=K, D=D, I=I, BN=tk._DECODE_DOWN_BN, BK=tk._DECODE_BK)),
    (tk._moe_group_up, {"h_ptr": "*bf16", "row_pair_ptr": "*i32", "tile_expert_ptr": "*i32", **MOE_DECODE},
     dict(E=E, K=K, D=D, I=I, BM=tk._GROUP_BM, BN=tk._GROUP_BN, BK=tk._GROUP_BK, F32=False, EARLY_EXIT=False)),
    (tk._moe_group_down, {"act_ptr": "*bf16", "row_pair_ptr": "*i32", "tile_expert_ptr": "*i32", "w_ptr": "*fp32",
                          "b2_ptr": "*u8", "s2_ptr": "*u8", "bias2_ptr": "*bf16", "y_ptr": "*fp32"},
     dict(E=E, D=D, I=I, BM=tk._GROUP_BM, BN=tk._GROUP_BN, BK=tk._GROUP_BK, F32=False, EARLY_EXIT=False)),
    *[(tk._attn_prefill, {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "sinks_ptr": "*fp32", "o_ptr": "*bf16",
                          **{n: "i32" for n in ("T", "S", "q_start", "k_start", "stride_q", "stride_k", "stride_v",
                                                "stride_o")}, "sm_scale": "fp32"},
       dict(G=8, WINDOW=w, HEAD_DIM=64, BM=tk._PREFILL_BM, BN=tk._PREFILL_BN, NBLK=0, F32=False)) for w in (0, 128)],
    *[(tk._attn_decode_part, {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "kpos_ptr": "*i64",
                              "qpos_ptr": "*i64", "m_ptr": "*fp32", "l_ptr": "*fp32", "acc_ptr": "*fp32", "S": "i32",
                              "stride_k": "i32", "stride_v": "i32", "sm_scale": "fp32", "NSPLIT": "i32"},
       dict(G=8, GP=16, WINDOW=w, HAS_POS=p, HEAD_DIM=64, CHUNK=tk._DECODE_CHUNK, BN=tk._DECODE_KBN, F32=False))
      for p, w in ((False, 0), (True, 128), (True, 0))],
    (tk._attn_decode_combine, {"m_ptr": "*fp32", "l_ptr": "*fp32", "acc_ptr": "*fp32", "sinks_ptr": "*fp32",
                               "o_ptr": "*bf16", "NSPLIT": "i32"}, dict(G=8, GP=16, HEAD_DIM=64, NS_BLOCK=32)),
    (tk._rms_norm, {"x_ptr": "*bf16", "w_ptr": "*fp32", "o_ptr": "*bf16", "eps": "fp32"}, dict(D=D, BLOCK=4096)),
    (tk._rope, {"x_ptr": "*bf16", "cos_ptr": "*bf16", "sin_ptr": "*bf16", "o_ptr": "*bf16", "stride_t": "i32"},
     dict(NH=72, HALF=32, BH=16)),
]


def main(arch: int) -> int:
    assert not tk.INTERPRET, "run with TRITON_INTERPRET=0"
    target = GPUTarget("cuda", arch, 32)
    for fn, sig, consts in KERNELS:
        signature = {**sig, **{name: "constexpr" for name in consts}}
        assert list(signature) == fn.arg_names, (fn.__name__, list(signature), fn.arg_names)
        src = ASTSource(fn=fn, signature=signature,
                        constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
        kernel = triton.compile(src, target=target)
        print(f"ok {fn.__name__} sm_{arch} cubin={len(kernel.asm['cubin'])} shared={kernel.metadata.shared}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 90))
