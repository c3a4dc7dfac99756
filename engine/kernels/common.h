// Lantern CPU kernels: what the per-instruction-set sources share (internal; the public interface is
// lantern_kernels.h). Self-contained: it includes everything it uses and depends on nothing defined by
// the file that includes it.
//
// One source per instruction set (scalar.cpp, avx512.cpp, avx2.cpp, neon.cpp) fills in an Isa table of
// kernels; lantern_kernels.cpp holds the C functions, which validate arguments, split the work over
// threads and call the table of the path they run. x86 paths compile their functions for their ISA with
// target attributes (no global -m flags), so the one library loads on every x86-64 CPU and only the paths
// the CPU supports are ever called.
//
// Numbers: every product is exact in fp32 (an E2M1 value times a bf16 value, or bf16 times bf16), so the
// paths differ only in the order of fp32 sums (fused multiply-adds round only the sums).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lantern_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define LK_X86 1
#else
#define LK_X86 0
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define LK_ARM64 1
#else
#define LK_ARM64 0
#endif

#define LK_ALWAYS_INLINE __attribute__((always_inline))

namespace lk {

constexpr int kBlock = 32;  // MXFP4 block: 32 elements, 16 bytes (element 2j: low nibble of byte j) + 1 scale byte

// Exact values of the 16 E2M1 codes.
inline constexpr float kFp4[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                   -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

inline float bf16_to_f32(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {  // round to nearest even, NaN kept quiet (same as torch)
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;
  return static_cast<uint16_t>(bits >> 16);
}

inline float e8m0(uint8_t s) {  // 2^(s-127); s == 0 gives 2^-127 (a denormal), s == 255 gives +inf
  return std::ldexp(1.0f, static_cast<int>(s) - 127);
}

// ---- the table each instruction-set source fills in ------------------------------------------------------

// MXFP4 rows against nt activation vectors: out[r*out_stride + t] = sum over blocks g of
// (block g of row r . block g of xs[t]) * e8m0(scale), fp32, no bias. Row r's packed bytes are at
// blocks + r*row_stride_b (G blocks of 16 bytes), its scales at scales + r*row_stride_s; xs[t] is in the
// path's activation layout (Isa::x_pos), Isa::x_len(G) values, zero padded.
using RowsFn = void (*)(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                        int64_t row_stride_s, int64_t nrows, const uint16_t* const* xs, int nt, float* out,
                        int64_t out_stride);

// Dense bf16: x [T, D] bf16 put into the form the path's dense rows read (may return x itself, or fill buf).
using DensePrepareFn = const void* (*)(const uint16_t* x, int64_t T, int64_t D, std::vector<float>& buf);
// nrows weight rows [D] bf16 (contiguous) against the T prepared x rows: out[r*os + t] = fp32 dot.
using DenseRowsFn = void (*)(const uint16_t* w, int64_t nrows, const void* x, int64_t T, int64_t D, float* out,
                             int64_t os);

// Decode attention for one kv head: q [G, d] bf16, k/v rows at k + s*ld (d bf16), sinks [G] fp32 ->
// out [G, d] bf16 (lk_attn_decode's math; d a multiple of 16 up to 64, G up to 16).
using AttnHeadFn = void (*)(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t ld, int64_t S, int G,
                            int d, const float* sinks, float scale, uint16_t* out);

struct Isa {
  lk_path path;
  bool (*cpu_supports)();        // this CPU and OS can run the path (checked once, by lantern_kernels.cpp)
  int64_t (*x_pos)(int64_t i);   // element i of an activation vector -> its index in the path's layout
  int64_t (*x_len)(int64_t G);   // length of a layout vector for G blocks
  RowsFn rows;
  DensePrepareFn dense_prepare;
  DenseRowsFn dense_rows;
  AttnHeadFn attn_head;          // nullptr: no decode-attention kernel on this path
  double (*fma_probe)(int64_t iterations);  // runs independent FMA chains; returns the flops it did
};

// Keeps a probe's result alive (the compiler must not drop the arithmetic).
inline volatile float g_probe_sink = 0.0f;
inline void probe_sink(float v) { g_probe_sink = v; }

// The table of each path, or nullptr where that source was built for another architecture.
const Isa* isa_scalar();
const Isa* isa_avx512();
const Isa* isa_avx2();
const Isa* isa_neon();

// ---- one tiling of dense rows for every SIMD path ---------------------------------------------------------
// K (a path's dense tile): K::X, the element type of the prepared x rows (row stride ldx); K::kRows x
// K::kToks, the register tile used for several tokens; K::tile<NR, NT>(w, ldw, x, ldx, D, out, os): NR
// weight rows against NT x rows, out[r*os + t] = fp32 dot. One token: 4 rows at a time. Several: blocks of
// 16 tokens (they stay in cache while the rows stream past), kRows x kToks tiles, then single tokens; rows
// left over from kRows run one at a time.
// Inlined into each path's dense_rows (compiled for that path's ISA); the tiles are called, not inlined.
template <class K>
LK_ALWAYS_INLINE inline void dense_rows_tiled(const uint16_t* w, int64_t nrows, const typename K::X* x, int64_t ldx,
                                              int64_t T, int64_t D, float* out, int64_t os) {
  int64_t r = 0;
  if (T == 1) {
    for (; r + 4 <= nrows; r += 4) K::template tile<4, 1>(w + r * D, D, x, ldx, D, out + r * os, os);
    for (; r < nrows; ++r) K::template tile<1, 1>(w + r * D, D, x, ldx, D, out + r * os, os);
    return;
  }
  constexpr int64_t kTokBlock = 16;
  for (int64_t t0 = 0; t0 < T; t0 += kTokBlock) {
    const int64_t t1 = std::min(T, t0 + kTokBlock);
    for (r = 0; r + K::kRows <= nrows; r += K::kRows) {
      int64_t t = t0;
      for (; t + K::kToks <= t1; t += K::kToks)
        K::template tile<K::kRows, K::kToks>(w + r * D, D, x + t * ldx, ldx, D, out + r * os + t, os);
      for (; t < t1; ++t) K::template tile<K::kRows, 1>(w + r * D, D, x + t * ldx, ldx, D, out + r * os + t, os);
    }
  }
  for (; r < nrows; ++r)
    for (int64_t t = 0; t < T; ++t) K::template tile<1, 1>(w + r * D, D, x + t * ldx, ldx, D, out + r * os + t, os);
}

}  // namespace lk
