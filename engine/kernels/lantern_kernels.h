/* Lantern CPU kernels: the public C interface of the native library.
 *
 * This header is the one statement of the library's interface. The C++ sources implement it, the native
 * harness (tests/native/) calls it, and the Python binding (engine/kernels/__init__.py) reads it at load
 * time: the ABI version, the two enums and every LK_API prototype (ctypes argument types come from the
 * parameter types below). Keep to what that reader understands: one `NAME = value,` per enum line, plain C
 * parameter types (pointers, int, unsigned, int64_t, float, double and the two enums), and a matching
 * LK_ABI_VERSION bump whenever a prototype or a meaning changes.
 *
 * Semantics (the exact math: docs in the repo, engine/moe.py and engine/model.py): bf16 inputs are exact,
 * every product is exact in fp32, sums are fp32 (only their order differs between paths), results are
 * rounded to bf16 once where the output is bf16. Arrays are C-contiguous (row-major). `nthreads` is the
 * number of threads a call may use (the caller's included); values < 1 mean 1.
 */
#ifndef LANTERN_KERNELS_H
#define LANTERN_KERNELS_H

#include <stdint.h>

#define LK_ABI_VERSION 11

#if defined(_WIN32)
#if defined(LK_BUILDING)
#define LK_API __declspec(dllexport)
#else
#define LK_API __declspec(dllimport)
#endif
#else
#define LK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What every computing function returns. */
typedef enum lk_status {
  LK_OK = 0,
  LK_ERR_ARGUMENT = -1,  /* an argument out of range (negative size, block-unaligned width, ...) */
  LK_ERR_PATH = -2,      /* the path is unknown, built for another architecture, or this CPU cannot run it */
  LK_ERR_EXPERT = -3,    /* an expert index outside 0 .. E-1 */
  LK_UNSUPPORTED = -4    /* the path has no kernel for this operation or shape: the caller uses another route */
} lk_status;

/* Instruction-set paths. LK_PATH_AUTO runs the best one this CPU (and OS) can run. */
typedef enum lk_path {
  LK_PATH_AUTO = 0,
  LK_PATH_SCALAR = 1,  /* portable C++ */
  LK_PATH_AVX512 = 2,  /* x86-64 with AVX-512 F/BW/VL/DQ + BF16 (vdpbf16ps) */
  LK_PATH_AVX2 = 3,    /* x86-64 with AVX2 + FMA */
  LK_PATH_NEON = 4     /* AArch64 AdvSIMD (baseline armv8-a) */
} lk_path;

/* LK_ABI_VERSION of the header the library was built from. */
LK_API int lk_abi_version(void);

/* The best path this CPU runs (never LK_PATH_AUTO). */
LK_API lk_path lk_best_path(void);

/* 1 if this CPU (and OS) can run `path`, else 0 (LK_PATH_AUTO: 1). */
LK_API int lk_path_available(lk_path path);

/* Testing: act as if this CPU could not run the paths in `mask` (bit 1 << path; the scalar path cannot be
 * hidden), e.g. an AVX2-only CPU on an AVX-512 one; 0 restores what detection found. Returns the mask in
 * effect. */
LK_API unsigned lk_hide_paths(unsigned mask);

/* The gpt-oss MoE expert block from packed MXFP4 weights (engine/moe.py:moe_experts):
 *   u = h(bf16) . W1[e]^T (exact MXFP4 values, fp32 sums) + bias1; a = bf16(swiglu(u, limit)) with gate =
 *   even rows, up = odd rows; y = a . W2[e]^T + bias2; out[t] = bf16(sum_k w[t,k] * y[t,k]) (k in order).
 * h [T, D] bf16, expert_idx [T, K], expert_w [T, K] fp32; mlp1 blocks [E, 2I, D/32, 16] u8, scales
 * [E, 2I, D/32] u8 (e8m0), bias [E, 2I] bf16; mlp2 blocks [E, D, I/32, 16], scales [E, D, I/32], bias
 * [E, D]; out [T, D] bf16. D and I multiples of 32. */
LK_API lk_status lk_moe_experts(const uint16_t* h, const int64_t* expert_idx, const float* expert_w,
                                const uint8_t* mlp1_blocks, const uint8_t* mlp1_scales, const uint16_t* mlp1_bias,
                                const uint8_t* mlp2_blocks, const uint8_t* mlp2_scales, const uint16_t* mlp2_bias,
                                uint16_t* out, int64_t T, int64_t K, int64_t E, int64_t D, int64_t I,
                                float swiglu_limit, lk_path path, int nthreads);

/* out [T, N] fp32 = x [T, D] bf16 . W^T, W an MXFP4 matrix: blocks [N, D/32, 16] u8, scales [N, D/32] u8
 * (the expert block's inner product on its own; D a multiple of 32). */
LK_API lk_status lk_mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, const uint16_t* x, float* out,
                               int64_t T, int64_t D, int64_t N, lk_path path, int nthreads);

/* out [T, N] = x [T, D] bf16 . w [N, D]^T bf16 (+ bias [N] bf16, may be null), fp32 sums, bias added in
 * fp32; stored as fp32 (out_bf16 == 0) or rounded once to bf16 (out_bf16 != 0). */
LK_API lk_status lk_linear_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* bias, void* out, int64_t T,
                                int64_t D, int64_t N, int out_bf16, lk_path path, int nthreads);

/* lk_linear_bf16 with the weight given as nseg matrices stacked by rows, uncopied: segment i has ns[i] rows
 * at ws[i] and bias bs[i] (may be null); out [T, sum ns] as if they were one matrix. */
LK_API lk_status lk_linear_bf16_multi(const uint16_t* x, const uint16_t* const* ws, const uint16_t* const* bs,
                                      const int64_t* ns, int nseg, void* out, int64_t T, int64_t D, int out_bf16,
                                      lk_path path, int nthreads);

/* Decode attention, one query against every key: q [Hkv, G, d] bf16, k and v [S, Hkv, d] bf16, sinks
 * [Hkv * G] fp32 -> out [Hkv * G * d] bf16 (scores = fp32 sums of exact products, times scale; softmax
 * over [scores, sink]; probs . v in fp32). LK_UNSUPPORTED on the scalar path and for d not a multiple of 16,
 * d > 64 or G > 16. */
LK_API lk_status lk_attn_decode(const uint16_t* q, const uint16_t* k, const uint16_t* v, const float* sinks,
                                uint16_t* out, int64_t S, int64_t Hkv, int64_t G, int64_t d, float scale, lk_path path,
                                int nthreads);

/* RMSNorm: out[t] = bf16((x[t] * (1 / sqrt(mean(x[t]^2) + eps))) * scale), fp32 statistics; x [T, D] bf16,
 * scale [D] fp32 (engine/model.py:rms_norm). */
LK_API lk_status lk_rms_norm(const uint16_t* x, const float* scale, float eps, uint16_t* out, int64_t T, int64_t D,
                             int nthreads);

/* Streaming read of n bytes at p (every 64-byte line) split over nthreads; a checksum of what was read goes
 * to *checksum so that the reads are not optimised away (bandwidth probe). */
LK_API lk_status lk_read_bytes(const uint8_t* p, int64_t n, int nthreads, double* checksum);

/* Peak-rate probe: independent fp32 fused multiply-add chains in `path`'s widest registers (the scalar path:
 * plain multiply + add), 4 * nthreads work units of `iterations` steps each, shared by nthreads threads;
 * *flops_per_s = fp32 floating-point operations (an FMA counts 2) per second of wall time. */
LK_API lk_status lk_fma_peak(lk_path path, int nthreads, int64_t iterations, double* flops_per_s);

#ifdef __cplusplus
}
#endif

#endif /* LANTERN_KERNELS_H */
