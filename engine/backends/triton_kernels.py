"""Triton kernels of the `cuda-triton` backend: MXFP4 experts read from the packed blocks and scales, and
attention with sinks and the sliding window (spec §1.2, §3).

Semantics are the reference's (docs/backends.md): every product is of two bf16 values (the MXFP4 values
times their power-of-two scale are exact in bf16), sums are fp32, the swiglu and softmaxes are fp32, the
MoE output is rounded to bf16 once. Only fp32 summation order differs from the torch path.

The same kernels run on an NVIDIA GPU and, under Triton's interpreter (TRITON_INTERPRET=1), on CPU tensors:
that is how `make test` checks them on a machine without a GPU. Importing this module on a machine where
CUDA is unusable switches the interpreter on (it is decided when the kernels are defined). Two differences
between the modes, neither changing the math: the interpreter's `tl.dot` mishandles bf16 operands, so
there the same bf16 values are passed as fp32 (exact), and it cannot run loops whose bounds depend on the
program id, so there such loops run to a fixed count with the extra blocks masked off.

Written for Triton 3.6 (the GPU machine's) and nothing newer.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
# Globals a kernel reads must be constexpr (compiled Triton refuses plain Python globals).
SWIGLU_ALPHA = tl.constexpr(1.702)
NEG_BIG = tl.constexpr(-1.0e30)   # finite "minus infinity" for running maxima (exp(NEG_BIG - x) == 0, no NaN)
_RNE_BY_HAND = tl.constexpr(INTERPRET)   # the interpreter truncates fp32 -> bf16; the GPU rounds to nearest
# Triton's own helpers (tl.zeros, ...) are made interpreted or compiled when triton is first imported:
_LANG_INTERPRETED = not isinstance(tl.zeros, triton.runtime.jit.JITFunction)


def problem(device: str) -> str | None:
    """Why these kernels cannot run on `device` ("cuda" | "cpu") in this process, or None."""
    if INTERPRET and not _LANG_INTERPRETED:
        return "triton was imported before TRITON_INTERPRET=1 was set; set it before starting Python"
    if device == "cpu" and not INTERPRET:
        return "Triton kernels run on the CPU only under its interpreter: set TRITON_INTERPRET=1"
    if device == "cuda" and INTERPRET:
        return "TRITON_INTERPRET=1 is set, so Triton kernels run on the CPU only; unset it to use the GPU"
    return None


# ---- shared helpers ---------------------------------------------------------------------------------
@triton.jit
def _dot(a, b, F32: tl.constexpr):
    """a [M, K] @ b [K, N] -> fp32, both holding bf16 values: exact products, fp32 sums."""
    if F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))


@triton.jit
def _bf16(x):
    """fp32 -> bf16, rounded to nearest even (by hand under the interpreter, whose cast truncates)."""
    if _RNE_BY_HAND:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)
    else:
        return x.to(tl.bfloat16)


@triton.jit
def _fp4(nib):
    """E2M1 nibble (int32 0..15) -> its value in fp32 (0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6), exactly."""
    e = (nib >> 1) & 3
    m = (nib & 1).to(tl.float32)
    pow2 = tl.where(e == 1, 1.0, tl.where(e == 2, 2.0, 4.0))
    mag = tl.where(e == 0, 0.5 * m, (1.0 + 0.5 * m) * pow2)
    return tl.where(nib >= 8, -mag, mag)


@triton.jit
def _e8m0(s):
    """E8M0 scale byte (int32 1..254) -> 2^(s-127) in fp32, built from its exponent bits (exact)."""
    return (s << 23).to(tl.float32, bitcast=True)


@triton.jit
def _mxfp4_tile(blocks_ptr, scales_ptr, rows, row_ok, k0, KDIM: tl.constexpr, BK: tl.constexpr):
    """Decoded MXFP4 weights of `rows` [R] (global row ids into [rows, KDIM]) for columns k0..k0+BK-1,
    split by parity: (even columns [R, BK/2], odd columns [R, BK/2]) in fp32, zero outside the matrix."""
    half = tl.arange(0, BK // 2)                                   # byte index within the tile
    col = k0 + 2 * half                                            # even column of each byte
    ok = row_ok[:, None] & (col < KDIM)[None, :]
    byte = tl.load(blocks_ptr + rows[:, None].to(tl.int64) * (KDIM // 2) + (col // 2)[None, :], mask=ok,
                   other=0).to(tl.int32)
    s = tl.load(scales_ptr + rows[:, None].to(tl.int64) * (KDIM // 32) + (col // 32)[None, :], mask=ok,
                other=127).to(tl.int32)
    scale = _e8m0(s)
    return _fp4(byte & 15) * scale, _fp4(byte >> 4) * scale


# ---- MoE, decode: one token, K experts (a matrix-vector product per selected expert) -------------------
@triton.jit
def _moe_decode_up(h_ptr, idx_ptr, b1_ptr, s1_ptr, bias1_ptr, act_ptr, limit,
                   D: tl.constexpr, I: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """act[slot, j] = swiglu(W1[e] h + b1[e])_j for the slot's expert e; grid (K, cdiv(I, BN))."""
    slot = tl.program_id(0)
    e = tl.load(idx_ptr + slot).to(tl.int64)
    j = tl.program_id(1) * BN + tl.arange(0, BN)                   # [BN] swiglu outputs
    ok = j < I
    rows_g = e * (2 * I) + 2 * j                                   # gate rows (even), up rows (odd)
    rows_u = rows_g + 1
    half = tl.arange(0, BK // 2)
    acc_g = tl.zeros([BN], dtype=tl.float32)
    acc_u = tl.zeros([BN], dtype=tl.float32)
    for k0 in range(0, D, BK):
        col = k0 + 2 * half
        xe = tl.load(h_ptr + col, mask=col < D, other=0.0).to(tl.float32)          # [BK/2]
        xo = tl.load(h_ptr + col + 1, mask=col < D, other=0.0).to(tl.float32)
        ge, go = _mxfp4_tile(b1_ptr, s1_ptr, rows_g, ok, k0, D, BK)
        ue, uo = _mxfp4_tile(b1_ptr, s1_ptr, rows_u, ok, k0, D, BK)
        acc_g += tl.sum(ge * xe[None, :] + go * xo[None, :], axis=1)
        acc_u += tl.sum(ue * xe[None, :] + uo * xo[None, :], axis=1)
    g = acc_g + tl.load(bias1_ptr + rows_g, mask=ok, other=0.0).to(tl.float32)
    u = acc_u + tl.load(bias1_ptr + rows_u, mask=ok, other=0.0).to(tl.float32)
    g = tl.minimum(g, limit)
    u = tl.minimum(tl.maximum(u, -limit), limit)
    a = g * tl.sigmoid(SWIGLU_ALPHA * g) * (u + 1.0)
    tl.store(act_ptr + slot * I + j, _bf16(a), mask=ok)


@triton.jit
def _moe_decode_down(act_ptr, idx_ptr, w_ptr, b2_ptr, s2_ptr, bias2_ptr, out_ptr,
                     K: tl.constexpr, D: tl.constexpr, I: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """out[n] = bf16(sum_k w_k (W2[e_k] act_k + b2[e_k])_n), fp32 throughout; grid (cdiv(D, BN),)."""
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    ok = n < D
    half = tl.arange(0, BK // 2)
    total = tl.zeros([BN], dtype=tl.float32)
    for slot in range(0, K):
        e = tl.load(idx_ptr + slot).to(tl.int64)
        wk = tl.load(w_ptr + slot).to(tl.float32)
        rows = e * D + n
        acc = tl.zeros([BN], dtype=tl.float32)
        for k0 in range(0, I, BK):
            col = k0 + 2 * half
            xe = tl.load(act_ptr + slot * I + col, mask=col < I, other=0.0).to(tl.float32)
            xo = tl.load(act_ptr + slot * I + col + 1, mask=col < I, other=0.0).to(tl.float32)
            we, wo = _mxfp4_tile(b2_ptr, s2_ptr, rows, ok, k0, I, BK)
            acc += tl.sum(we * xe[None, :] + wo * xo[None, :], axis=1)
        y = acc + tl.load(bias2_ptr + rows, mask=ok, other=0.0).to(tl.float32)
        total += wk * y
    tl.store(out_ptr + n, _bf16(total), mask=ok)


# ---- MoE, prefill: token-slot pairs grouped by expert, one expert per tile of BM rows -----------------
@triton.jit
def _moe_group_up(h_ptr, row_pair_ptr, tile_expert_ptr, b1_ptr, s1_ptr, bias1_ptr, act_ptr, limit,
                  E: tl.constexpr, K: tl.constexpr, D: tl.constexpr, I: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, F32: tl.constexpr,
                  EARLY_EXIT: tl.constexpr):
    """act[r, j] = swiglu(W1[e] h[token(r)] + b1[e])_j for the BM padded rows r of tile t (expert e)."""
    t = tl.program_id(0)
    e = tl.load(tile_expert_ptr + t)
    if EARLY_EXIT:                                                 # (interpreter: skip the masked loop)
        if e >= E:
            return
    live = e < E                                                   # tiles past the last group do nothing
    e = tl.minimum(e, E - 1).to(tl.int64)
    r = t * BM + tl.arange(0, BM)
    pair = tl.load(row_pair_ptr + r)
    r_ok = (pair >= 0) & live
    tok = tl.where(r_ok, pair // K, 0).to(tl.int64)
    j = tl.program_id(1) * BN + tl.arange(0, BN)
    j_ok = (j < I) & live
    rows_g = e * (2 * I) + 2 * j
    rows_u = rows_g + 1
    half = tl.arange(0, BK // 2)
    acc_g = tl.zeros([BM, BN], dtype=tl.float32)
    acc_u = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, D, BK):
        col = k0 + 2 * half
        x_ok = r_ok[:, None] & (col < D)[None, :]
        xe = tl.load(h_ptr + tok[:, None] * D + col[None, :], mask=x_ok, other=0.0)        # [BM, BK/2]
        xo = tl.load(h_ptr + tok[:, None] * D + col[None, :] + 1, mask=x_ok, other=0.0)
        ge, go = _mxfp4_tile(b1_ptr, s1_ptr, rows_g, j_ok, k0, D, BK)                       # [BN, BK/2]
        ue, uo = _mxfp4_tile(b1_ptr, s1_ptr, rows_u, j_ok, k0, D, BK)
        acc_g += _dot(xe, tl.trans(ge), F32) + _dot(xo, tl.trans(go), F32)
        acc_u += _dot(xe, tl.trans(ue), F32) + _dot(xo, tl.trans(uo), F32)
    g = acc_g + tl.load(bias1_ptr + rows_g, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    u = acc_u + tl.load(bias1_ptr + rows_u, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    g = tl.minimum(g, limit)
    u = tl.minimum(tl.maximum(u, -limit), limit)
    a = g * tl.sigmoid(SWIGLU_ALPHA * g) * (u + 1.0)
    tl.store(act_ptr + r[:, None].to(tl.int64) * I + j[None, :], _bf16(a),
             mask=r_ok[:, None] & j_ok[None, :])


@triton.jit
def _moe_group_down(act_ptr, row_pair_ptr, tile_expert_ptr, w_ptr, b2_ptr, s2_ptr, bias2_ptr, y_ptr,
                    E: tl.constexpr, D: tl.constexpr, I: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, F32: tl.constexpr,
                    EARLY_EXIT: tl.constexpr):
    """y[pair(r), n] = w_pair (W2[e] act[r] + b2[e])_n in fp32, for the BM rows r of tile t (expert e)."""
    t = tl.program_id(0)
    e = tl.load(tile_expert_ptr + t)
    if EARLY_EXIT:
        if e >= E:
            return
    live = e < E
    e = tl.minimum(e, E - 1).to(tl.int64)
    r = t * BM + tl.arange(0, BM)
    pair = tl.load(row_pair_ptr + r)
    r_ok = (pair >= 0) & live
    n = tl.program_id(1) * BN + tl.arange(0, BN)
    n_ok = (n < D) & live
    rows = e * D + n
    half = tl.arange(0, BK // 2)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, I, BK):
        col = k0 + 2 * half
        x_ok = r_ok[:, None] & (col < I)[None, :]
        xe = tl.load(act_ptr + r[:, None].to(tl.int64) * I + col[None, :], mask=x_ok, other=0.0)
        xo = tl.load(act_ptr + r[:, None].to(tl.int64) * I + col[None, :] + 1, mask=x_ok, other=0.0)
        we, wo = _mxfp4_tile(b2_ptr, s2_ptr, rows, n_ok, k0, I, BK)
        acc += _dot(xe, tl.trans(we), F32) + _dot(xo, tl.trans(wo), F32)
    y = acc + tl.load(bias2_ptr + rows, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    wt = tl.load(w_ptr + tl.where(r_ok, pair, 0), mask=r_ok, other=0.0).to(tl.float32)
    p = tl.where(r_ok, pair, 0).to(tl.int64)
    tl.store(y_ptr + p[:, None] * D + n[None, :], y * wt[:, None], mask=r_ok[:, None] & n_ok[None, :])


# Decode reads each selected expert once: enough programs to keep the memory system busy (up: K x I/32,
# down: D/16) and 64-byte row reads. Untuned (no GPU was at hand): a GPU session should sweep these.
_DECODE_UP_BN, _DECODE_DOWN_BN, _DECODE_BK = 32, 16, 128
_GROUP_BM, _GROUP_BN, _GROUP_BK = 16, 64, 64


def _contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def moe_decode(h: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, ex, swiglu_limit: float) -> torch.Tensor:
    """One token: h [1, D] bf16, idx [1, K], w [1, K] f32 -> [1, D] bf16. Fixed launches, no host reads."""
    _, d = h.shape
    k = idx.shape[1]
    i = ex.mlp2_blocks.shape[2] * 32
    act = torch.empty((k, i), dtype=torch.bfloat16, device=h.device)               # [K, I]
    out = torch.empty((1, d), dtype=torch.bfloat16, device=h.device)
    idx_c, w_c = _contig(idx.reshape(-1)), _contig(w.reshape(-1).float())
    _moe_decode_up[(k, triton.cdiv(i, _DECODE_UP_BN))](
        _contig(h), idx_c, ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, act, float(swiglu_limit),
        D=d, I=i, BN=_DECODE_UP_BN, BK=_DECODE_BK)
    _moe_decode_down[(triton.cdiv(d, _DECODE_DOWN_BN),)](
        act, idx_c, w_c, ex.mlp2_blocks, ex.mlp2_scales, ex.mlp2_bias, out,
        K=k, D=d, I=i, BN=_DECODE_DOWN_BN, BK=_DECODE_BK)
    return out


def group_by_expert(idx: torch.Tensor, num_experts: int, bm: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-slot pairs grouped by expert in tiles of `bm` rows, computed on the device (no host reads).

    idx [T, K] -> (row_pair [R] int32: the pair t*K+k in each padded row, -1 for padding;
    tile_expert [R/bm] int32: each tile's expert, `num_experts` for tiles past the last group).
    R = T*K + E*(bm-1) rounded up to bm: the most rows any routing can need, so shapes depend on T only.
    """
    flat = idx.reshape(-1)                                                          # [TK]
    tk = flat.shape[0]
    dev = flat.device
    counts = torch.zeros(num_experts, dtype=torch.int64, device=dev).scatter_add_(  # [E] (bincount would
        0, flat, torch.ones_like(flat))                                             # read its max on the host)
    padded = (counts + bm - 1) // bm * bm
    ends = torch.cumsum(padded, 0)                                                  # [E]
    starts = ends - padded
    firsts = torch.cumsum(counts, 0) - counts                                       # first sorted index per e
    order = torch.argsort(flat, stable=True)                                        # [TK] pairs by expert
    expert_sorted = flat[order]
    rank = torch.arange(tk, device=dev) - firsts[expert_sorted]
    dest = starts[expert_sorted] + rank                                             # padded row of each pair
    rows = triton.cdiv(tk + num_experts * (bm - 1), bm) * bm
    row_pair = torch.full((rows,), -1, dtype=torch.int32, device=dev)
    row_pair[dest] = order.to(torch.int32)
    tile_start = torch.arange(0, rows, bm, device=dev)
    tile_expert = torch.searchsorted(ends, tile_start, right=True).to(torch.int32)
    return row_pair, tile_expert


def moe_grouped(h: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, ex, swiglu_limit: float) -> torch.Tensor:
    """Several tokens: h [T, D] bf16, idx [T, K], w [T, K] f32 -> [T, D] bf16, each expert's weights read
    once per tile of BM of its rows, straight from the packed blocks."""
    t, d = h.shape
    k = idx.shape[1]
    e = ex.mlp1_blocks.shape[0]
    i = ex.mlp2_blocks.shape[2] * 32
    row_pair, tile_expert = group_by_expert(idx, e, _GROUP_BM)
    rows = row_pair.shape[0]
    act = torch.empty((rows, i), dtype=torch.bfloat16, device=h.device)             # [R, I]
    y = torch.empty((t * k, d), dtype=torch.float32, device=h.device)               # [TK, D] weighted
    grid_t = rows // _GROUP_BM
    _moe_group_up[(grid_t, triton.cdiv(i, _GROUP_BN))](
        _contig(h), row_pair, tile_expert, ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, act,
        float(swiglu_limit), E=e, K=k, D=d, I=i, BM=_GROUP_BM, BN=_GROUP_BN, BK=_GROUP_BK, F32=INTERPRET,
        EARLY_EXIT=INTERPRET)
    _moe_group_down[(grid_t, triton.cdiv(d, _GROUP_BN))](
        act, row_pair, tile_expert, _contig(w.reshape(-1).float()), ex.mlp2_blocks, ex.mlp2_scales,
        ex.mlp2_bias, y, E=e, D=d, I=i, BM=_GROUP_BM, BN=_GROUP_BN, BK=_GROUP_BK, F32=INTERPRET,
        EARLY_EXIT=INTERPRET)
    return y.view(t, k, d).sum(dim=1).to(torch.bfloat16)                            # fp32 sum over slots


# ---- attention, prefill: flash attention with sinks, causal, banded on sliding layers ----------------
@triton.jit
def _attn_block(q, m_i, l_i, acc, k_ptr, v_ptr, j0, S, k_start, q_pos, q_ok, kvh, stride_k, stride_v,
                sm_scale, WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr, BN: tl.constexpr, F32: tl.constexpr):
    j = j0 + tl.arange(0, BN)                                      # key indices into k/v
    kd = tl.arange(0, HEAD_DIM)
    k_pos = k_start + j
    visible = (j < S)[None, :] & (k_pos[None, :] <= q_pos[:, None]) & q_ok[:, None]
    if WINDOW > 0:
        visible = visible & ((q_pos[:, None] - k_pos[None, :]) < WINDOW)
    key_ok = (j >= 0) & (j < S)
    kt = tl.load(k_ptr + j[:, None].to(tl.int64) * stride_k + kvh * HEAD_DIM + kd[None, :], mask=key_ok[:, None],
                 other=0.0)                                        # [BN, d]
    vt = tl.load(v_ptr + j[:, None].to(tl.int64) * stride_v + kvh * HEAD_DIM + kd[None, :], mask=key_ok[:, None],
                 other=0.0)
    s = _dot(q, tl.trans(kt), F32) * sm_scale                     # [BM, BN] fp32
    s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p, vt.to(tl.float32), input_precision="ieee")
    return m_new, l_i, acc


@triton.jit
def _attn_prefill(q_ptr, k_ptr, v_ptr, sinks_ptr, o_ptr, T, S, q_start, k_start, stride_q, stride_k, stride_v,
                  stride_o, sm_scale, G: tl.constexpr, WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, NBLK: tl.constexpr, F32: tl.constexpr):
    """o[i, h] for BM queries of head h against the keys they can see; grid (cdiv(T, BM), H).

    The sink starts the online softmax: running max = sink, running sum = 1 (its own term)."""
    pid_m = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // G
    i = pid_m * BM + tl.arange(0, BM)
    q_ok = i < T
    q_pos = q_start + i
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + i[:, None].to(tl.int64) * stride_q + h * HEAD_DIM + d[None, :], mask=q_ok[:, None],
                other=0.0)
    sink = tl.load(sinks_ptr + h).to(tl.float32)
    m_i = tl.zeros([BM], dtype=tl.float32) + sink
    l_i = tl.zeros([BM], dtype=tl.float32) + 1.0
    acc = tl.zeros([BM, HEAD_DIM], dtype=tl.float32)
    first = q_start + pid_m * BM                                   # position of the tile's first query
    last = tl.minimum(first + BM, q_start + T) - 1
    lo = first * 0
    if WINDOW > 0:
        lo = tl.maximum(lo, first - WINDOW + 1 - k_start)
    lo = (lo // BN) * BN
    hi = tl.minimum(S, last - k_start + 1)                          # keys after the last query are unseen
    if NBLK > 0:                                                   # fixed trip count (interpreter)
        for b in range(0, NBLK):
            m_i, l_i, acc = _attn_block(q, m_i, l_i, acc, k_ptr, v_ptr, lo + b * BN, hi, k_start, q_pos, q_ok,
                                        kvh, stride_k, stride_v, sm_scale, WINDOW, HEAD_DIM, BN, F32)
    else:
        for j0 in range(lo, hi, BN):
            m_i, l_i, acc = _attn_block(q, m_i, l_i, acc, k_ptr, v_ptr, j0, hi, k_start, q_pos, q_ok,
                                        kvh, stride_k, stride_v, sm_scale, WINDOW, HEAD_DIM, BN, F32)
    out = acc / l_i[:, None]
    tl.store(o_ptr + i[:, None].to(tl.int64) * stride_o + h * HEAD_DIM + d[None, :], _bf16(out),
             mask=q_ok[:, None])


_PREFILL_BM, _PREFILL_BN = 32, 32


def attention_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor, q_start: int,
                      k_start: int, window: int | None, sm_scale: float) -> torch.Tensor:
    """q [T, Hkv, G, d], k/v [S, Hkv, d] bf16 (rows may be strided), consecutive positions from q_start /
    k_start, sinks [H] f32 -> [T, H*d] bf16."""
    t, hkv, g, d = q.shape
    s = k.shape[0]
    h = hkv * g
    q2 = q.reshape(t, h * d)
    assert q2.stride(1) == 1 and k.stride(2) == 1 and v.stride(2) == 1 and k.stride(1) == d and v.stride(1) == d
    out = torch.empty((t, h * d), dtype=torch.bfloat16, device=q.device)
    win = int(window or 0)
    nblk = 0
    if INTERPRET:                                                  # enough blocks for any tile's key range
        span = (_PREFILL_BM + win) if win else s
        nblk = triton.cdiv(min(span, s), _PREFILL_BN) + 1
    _attn_prefill[(triton.cdiv(t, _PREFILL_BM), h)](
        q2, k, v, _contig(sinks.float()), out, t, s, int(q_start), int(k_start), q2.stride(0), k.stride(0),
        v.stride(0), out.stride(0), float(sm_scale), G=g, WINDOW=win, HEAD_DIM=d, BM=_PREFILL_BM, BN=_PREFILL_BN, NBLK=nblk,
        F32=INTERPRET)
    return out


# ---- attention, decode: one query against the cache, split over key chunks (flash-decoding) ---------
@triton.jit
def _attn_decode_part(q_ptr, k_ptr, v_ptr, kpos_ptr, qpos_ptr, m_ptr, l_ptr, acc_ptr, S, stride_k, stride_v,
                      sm_scale, NSPLIT, G: tl.constexpr, GP: tl.constexpr, WINDOW: tl.constexpr,
                      HAS_POS: tl.constexpr, HEAD_DIM: tl.constexpr, CHUNK: tl.constexpr, BN: tl.constexpr,
                      F32: tl.constexpr):
    """Partial softmax state (max, sum, weighted values) of the G query heads of kv head `kvh` over one
    chunk of keys; grid (Hkv, NSPLIT). With HAS_POS the keys' positions come from kpos_ptr and the query's
    from qpos_ptr (device memory), and invisible keys are masked (and not loaded)."""
    kvh = tl.program_id(0)
    split = tl.program_id(1)
    gi = tl.arange(0, GP)
    g_ok = gi < G
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + (kvh * G + gi)[:, None] * HEAD_DIM + d[None, :], mask=g_ok[:, None], other=0.0)
    if HAS_POS:
        qp = tl.load(qpos_ptr)
    m_i = tl.zeros([GP], dtype=tl.float32) + NEG_BIG
    l_i = tl.zeros([GP], dtype=tl.float32)
    acc = tl.zeros([GP, HEAD_DIM], dtype=tl.float32)
    for b in range(0, CHUNK // BN):
        j = split * CHUNK + b * BN + tl.arange(0, BN)
        ok = j < S
        if HAS_POS:
            kp = tl.load(kpos_ptr + j, mask=ok, other=0)
            ok = ok & (kp <= qp)
            if WINDOW > 0:
                ok = ok & ((qp - kp) < WINDOW)
        kt = tl.load(k_ptr + j[:, None].to(tl.int64) * stride_k + kvh * HEAD_DIM + d[None, :], mask=ok[:, None],
                     other=0.0)
        vt = tl.load(v_ptr + j[:, None].to(tl.int64) * stride_v + kvh * HEAD_DIM + d[None, :], mask=ok[:, None],
                     other=0.0)
        s = _dot(q, tl.trans(kt), F32) * sm_scale                 # [GP, BN]
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, vt.to(tl.float32), input_precision="ieee")
        m_i = m_new
    base = kvh * NSPLIT + split
    tl.store(m_ptr + base * GP + gi, m_i)
    tl.store(l_ptr + base * GP + gi, l_i)
    tl.store(acc_ptr + (base * GP + gi)[:, None] * HEAD_DIM + d[None, :], acc)


_DECODE_CHUNK, _DECODE_KBN = 256, 32


def attention_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor, sm_scale: float,
                     q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None,
                     window: int | None = None) -> torch.Tensor:
    """q [1, Hkv, G, d], k/v [S, Hkv, d] bf16, sinks [H] f32 -> [1, H*d] bf16. Without positions every key
    is visible; with q_pos [1] / k_pos [S] (device) the causal/window mask is applied on the device. The
    launch shapes depend on S only: fixed for a cache buffer, so the step can be captured in a graph."""
    _, hkv, g, d = q.shape
    s = k.shape[0]
    gp = max(16, triton.next_power_of_2(g))
    chunk = min(_DECODE_CHUNK, max(_DECODE_KBN, triton.next_power_of_2(s)))
    nsplit = triton.cdiv(s, chunk)
    dev = q.device
    m = torch.empty((hkv, nsplit, gp), dtype=torch.float32, device=dev)
    lsum = torch.empty((hkv, nsplit, gp), dtype=torch.float32, device=dev)
    acc = torch.empty((hkv, nsplit, gp, d), dtype=torch.float32, device=dev)
    has_pos = k_pos is not None
    assert k.stride(2) == 1 and v.stride(2) == 1 and k.stride(1) == d and v.stride(1) == d
    _attn_decode_part[(hkv, nsplit)](
        _contig(q.reshape(hkv * g, d)), k, v, k_pos if has_pos else q, q_pos if has_pos else q, m, lsum, acc,
        s, k.stride(0), v.stride(0), float(sm_scale), nsplit, G=g, GP=gp, WINDOW=int(window or 0) if has_pos else 0,
        HAS_POS=has_pos, HEAD_DIM=d, CHUNK=chunk, BN=_DECODE_KBN, F32=INTERPRET)
    out = torch.empty((1, hkv * g * d), dtype=torch.bfloat16, device=dev)
    _attn_decode_combine[(hkv, g)](m, lsum, acc, _contig(sinks.float()), out, nsplit, G=g, GP=gp, HEAD_DIM=d,
                                   NS_BLOCK=max(2, triton.next_power_of_2(nsplit)))
    return out


@triton.jit
def _attn_decode_combine(m_ptr, l_ptr, acc_ptr, sinks_ptr, o_ptr, NSPLIT, G: tl.constexpr, GP: tl.constexpr,
                         HEAD_DIM: tl.constexpr, NS_BLOCK: tl.constexpr):
    """Merge the splits' partial softmax states of query head (kvh, g) with its sink (denominator only)."""
    kvh = tl.program_id(0)
    g = tl.program_id(1)
    sp = tl.arange(0, NS_BLOCK)
    ok = sp < NSPLIT
    row = (kvh * NSPLIT + sp) * GP + g                             # [NS_BLOCK]
    m = tl.load(m_ptr + row, mask=ok, other=NEG_BIG)
    lsum = tl.load(l_ptr + row, mask=ok, other=0.0)
    sink = tl.load(sinks_ptr + kvh * G + g).to(tl.float32)
    top = tl.maximum(tl.max(m, axis=0), sink)
    scale = tl.exp(m - top)
    denom = tl.sum(lsum * scale, axis=0) + tl.exp(sink - top)
    d = tl.arange(0, HEAD_DIM)
    acc = tl.load(acc_ptr + row[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0)   # [NS, d]
    o = tl.sum(acc * scale[:, None], axis=0) / denom
    tl.store(o_ptr + (kvh * G + g) * HEAD_DIM + d, _bf16(o))


# ---- RMSNorm and RoPE: one launch each instead of several torch ops (decode is launch-bound) ----------
@triton.jit
def _rms_norm(x_ptr, w_ptr, o_ptr, eps, D: tl.constexpr, BLOCK: tl.constexpr):
    """o[r] = bf16(x[r] * rsqrt(mean(x[r]^2) + eps) * w), statistics in fp32; grid (rows,)."""
    r = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK)
    ok = d < D
    x = tl.load(x_ptr + r * D + d, mask=ok, other=0.0).to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)
    w = tl.load(w_ptr + d, mask=ok, other=0.0).to(tl.float32)
    tl.store(o_ptr + r * D + d, _bf16((x * inv) * w), mask=ok)


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """x [T, D] bf16, scale [D] f32 -> [T, D] bf16."""
    t, d = x.shape
    out = torch.empty_like(x)
    _rms_norm[(t,)](_contig(x), _contig(scale), out, float(eps), D=d, BLOCK=triton.next_power_of_2(d))
    return out


@triton.jit
def _rope(x_ptr, cos_ptr, sin_ptr, o_ptr, stride_t, NH: tl.constexpr, HALF: tl.constexpr, BH: tl.constexpr):
    """Rotate-half RoPE on BH heads of token t, every product and sum rounded to bf16 as torch's bf16 ops
    round them: (bf16(x1 cos) - bf16(x2 sin), bf16(x2 cos) + bf16(x1 sin)); grid (T, cdiv(NH, BH))."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1) * BH + tl.arange(0, BH)
    ok = (h < NH)[:, None]
    i = tl.arange(0, HALF)
    src = x_ptr + t * stride_t + h[:, None] * (2 * HALF) + i[None, :]
    x1 = tl.load(src, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=ok, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + t * HALF + i).to(tl.float32)[None, :]
    s = tl.load(sin_ptr + t * HALF + i).to(tl.float32)[None, :]
    o1 = _bf16(_bf16(x1 * c).to(tl.float32) - _bf16(x2 * s).to(tl.float32))
    o2 = _bf16(_bf16(x2 * c).to(tl.float32) + _bf16(x1 * s).to(tl.float32))
    dst = o_ptr + t * (NH * 2 * HALF) + h[:, None] * (2 * HALF) + i[None, :]
    tl.store(dst, o1, mask=ok)
    tl.store(dst + HALF, o2, mask=ok)


def rope(qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """qk [T, NH, d] bf16 (rows may be strided, heads contiguous), cos/sin [T, d/2] bf16 -> [T, NH, d]."""
    t, nh, d = qk.shape
    assert qk.stride(2) == 1 and qk.stride(1) == d and qk.dtype == torch.bfloat16
    out = torch.empty((t, nh, d), dtype=qk.dtype, device=qk.device)
    bh = 16
    _rope[(t, triton.cdiv(nh, bh))](qk, _contig(cos), _contig(sin), out, qk.stride(0), NH=nh, HALF=d // 2, BH=bh)
    return out
