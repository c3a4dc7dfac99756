// Lantern CPU kernels: the NEON (AArch64 AdvSIMD) path.
//
// Built on AArch64 only (an empty table elsewhere).
// Baseline armv8-a NEON only: no bf16 / dotprod / fp16 extensions, so it runs on every AArch64 CPU.
//
// Semantics are those of the scalar path: every product is exact in fp32 (an E2M1 value times a bf16
// activation, or bf16 times bf16), so fused multiply-adds (vfmaq_f32) round only the sums; per 32-element
// block the fp32 partial sum is multiplied by the block's e8m0 scale (the scalar path's e8m0 table,
// 2^-127 for s == 0 and +inf for s == 255). Only the fp32 summation order differs from the scalar path.
//
// MXFP4 decode: the 16 bytes of a block hold element 2j in the low nibble of byte j and element 2j+1
// in the high nibble. Two table lookups (vqtbl1q_u8) give the low and high bytes of the bf16 pattern of
// each E2M1 code; zipping them gives bf16 words, and a widening shift by 16 (vshll_n_u16) gives the exact
// fp32 value. Per block that yields the 16 even elements, then the 16 odd ones, so the activations are
// laid out the same way (neon_pos) and converted bf16 -> fp32 once per call.
//
// Vector instructions per 32-element block and row for one token (decode): 1 load, 2 nibble split
// (and, ushr), 4 tbl, 4 zip, 8 shll, 8 fma/fmul, 1 fadd, and per 4 rows 3 faddp + 4 scale loads + 1 fma,
// plus 8 activation loads shared by the 4 rows: ~32 instructions for 32 multiply-adds (the scalar loop
// needs ~100+). With several tokens the 4 rows of a tile are decoded once into an fp32 buffer and each
// token costs 8 fma + 2 loads per block and row (4 rows x 4 tokens register tile).

#include "common.h"

#if LK_ARM64
#include <arm_neon.h>

namespace lk {
namespace {

// Element i of a vector (length a multiple of 32) -> position in the NEON layout: per block, the 16 even
// elements (low nibbles), then the 16 odd ones (high nibbles).
int64_t neon_pos(int64_t i) {
  const int64_t e = i % kBlock;
  return i - e + (e & 1) * 16 + e / 2;
}

int64_t neon_len(int64_t G) { return G * kBlock; }

bool neon_always() { return true; }  // every AArch64 CPU has AdvSIMD


// fp32 value of every e8m0 scale byte, exactly the scalar path's e8m0().
inline const float* neon_e8m0_table() {
  struct Table {
    float v[256];
    Table() {
      for (int s = 0; s < 256; ++s) v[s] = e8m0(static_cast<uint8_t>(s));
    }
  };
  static const Table t;
  return t.v;
}

// Low / high byte of the bf16 bit pattern of each E2M1 code (the exact values of kFp4; their fp32
// patterns have zero low halves).
struct NeonFp4Lut {
  uint8x16_t lo, hi;
};

inline NeonFp4Lut neon_fp4_lut() {
  struct Bytes {
    uint8_t lo[16], hi[16];
    Bytes() {
      for (int i = 0; i < 16; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &kFp4[i], 4);
        lo[i] = static_cast<uint8_t>(bits >> 16);
        hi[i] = static_cast<uint8_t>(bits >> 24);
      }
    }
  };
  static const Bytes b;
  return {vld1q_u8(b.lo), vld1q_u8(b.hi)};
}

inline float32x4_t neon_bf16_lo(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)); }
inline float32x4_t neon_bf16_hi(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)); }

// bf16 [n] -> fp32 [n] (exact).
inline void neon_widen(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint16x8_t v = vld1q_u16(src + i);
    vst1q_f32(dst + i, neon_bf16_lo(v));
    vst1q_f32(dst + i + 4, neon_bf16_hi(v));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

// One packed block (16 bytes) -> 8 fp32 vectors: w[0..3] = elements 0,2,..,30, w[4..7] = 1,3,..,31.
inline void neon_decode_block(const uint8_t* b, const NeonFp4Lut& lut, float32x4_t w[8]) {
  const uint8x16_t v = vld1q_u8(b);
  const uint8x16_t n0 = vandq_u8(v, vdupq_n_u8(0x0f));
  const uint8x16_t n1 = vshrq_n_u8(v, 4);
  const uint8x16_t l0 = vqtbl1q_u8(lut.lo, n0), h0 = vqtbl1q_u8(lut.hi, n0);
  const uint8x16_t l1 = vqtbl1q_u8(lut.lo, n1), h1 = vqtbl1q_u8(lut.hi, n1);
  const uint16x8_t e0 = vreinterpretq_u16_u8(vzip1q_u8(l0, h0)), e1 = vreinterpretq_u16_u8(vzip2q_u8(l0, h0));
  const uint16x8_t o0 = vreinterpretq_u16_u8(vzip1q_u8(l1, h1)), o1 = vreinterpretq_u16_u8(vzip2q_u8(l1, h1));
  w[0] = neon_bf16_lo(e0);
  w[1] = neon_bf16_hi(e0);
  w[2] = neon_bf16_lo(e1);
  w[3] = neon_bf16_hi(e1);
  w[4] = neon_bf16_lo(o0);
  w[5] = neon_bf16_hi(o0);
  w[6] = neon_bf16_lo(o1);
  w[7] = neon_bf16_hi(o1);
}

// {sum of a's lanes, sum of b's, sum of c's, sum of d's}
inline float32x4_t neon_hsum4(float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d) {
  return vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
}

// {e8m0(rs[0][g]), .., e8m0(rs[3][g])}
inline float32x4_t neon_scales4(const float* tab, const uint8_t* const* rs, int64_t g) {
  float32x4_t s = vld1q_dup_f32(tab + rs[0][g]);
  s = vld1q_lane_f32(tab + rs[1][g], s, 1);
  s = vld1q_lane_f32(tab + rs[2][g], s, 2);
  return vld1q_lane_f32(tab + rs[3][g], s, 3);
}

// Each block's products are summed to one fp32 value before the scale multiplies it, as in the scalar
// path (scaling per-lane partial sums instead could overflow to +inf and -inf with scales near 2^127
// where the block's total does not). Accumulators hold 4 rows in the 4 lanes of one vector.

// 4 rows decoded on the fly, one token. xf: fp32 activations in the NEON layout (G*32); out[r*out_stride].
inline void neon_mx_tile_1(const uint8_t* const* rb, const uint8_t* const* rs, int64_t G, const float* xf,
                           float* out, int64_t out_stride) {
  const NeonFp4Lut lut = neon_fp4_lut();
  const float* tab = neon_e8m0_table();
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t g = 0; g < G; ++g) {
    float32x4_t x[8];
    for (int j = 0; j < 8; ++j) x[j] = vld1q_f32(xf + g * kBlock + 4 * j);
    float32x4_t p[4];
    for (int r = 0; r < 4; ++r) {
      float32x4_t w[8];
      neon_decode_block(rb[r] + g * 16, lut, w);
      float32x4_t p0 = vmulq_f32(w[0], x[0]), p1 = vmulq_f32(w[4], x[4]);
      for (int j = 1; j < 4; ++j) {
        p0 = vfmaq_f32(p0, w[j], x[j]);
        p1 = vfmaq_f32(p1, w[4 + j], x[4 + j]);
      }
      p[r] = vaddq_f32(p0, p1);
    }
    acc = vfmaq_f32(acc, neon_hsum4(p[0], p[1], p[2], p[3]), neon_scales4(tab, rs, g));
  }
  float o[4];
  vst1q_f32(o, acc);
  for (int r = 0; r < 4; ++r) out[r * out_stride] = o[r];
}

// 4 rows already decoded to fp32 (wbuf + r*n, NEON layout, unscaled) against NT tokens; out[r*out_stride + t].
template <int NT>
void neon_mx_tile_dec(const float* wbuf, int64_t n, const uint8_t* const* rs, int64_t G, const float* const* xf,
                      float* out, int64_t out_stride) {
  const float* tab = neon_e8m0_table();
  float32x4_t acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_f32(0.0f);
  for (int64_t g = 0; g < G; ++g) {
    float32x4_t p[NT][4];
    for (int t = 0; t < NT; ++t)
      for (int r = 0; r < 4; ++r) p[t][r] = vdupq_n_f32(0.0f);
    const int64_t o = g * kBlock;
    for (int j = 0; j < 8; ++j) {
      float32x4_t x[NT];
      for (int t = 0; t < NT; ++t) x[t] = vld1q_f32(xf[t] + o + 4 * j);
      for (int r = 0; r < 4; ++r) {
        const float32x4_t w = vld1q_f32(wbuf + r * n + o + 4 * j);
        for (int t = 0; t < NT; ++t) p[t][r] = vfmaq_f32(p[t][r], w, x[t]);
      }
    }
    const float32x4_t sc = neon_scales4(tab, rs, g);
    for (int t = 0; t < NT; ++t) acc[t] = vfmaq_f32(acc[t], neon_hsum4(p[t][0], p[t][1], p[t][2], p[t][3]), sc);
  }
  for (int t = 0; t < NT; ++t) {
    float v[4];
    vst1q_f32(v, acc[t]);
    for (int r = 0; r < 4; ++r) out[r * out_stride + t] = v[r];
  }
}

// Same contract as rows_scalar, with xs in the NEON layout (G*32 bf16 each).
void rows_neon(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
               int64_t row_stride_s, int64_t nrows, const uint16_t* const* xs, int nt, float* out,
               int64_t out_stride) {
  const int64_t n = G * kBlock;
  thread_local std::vector<float> xbuf, tail;
  thread_local std::vector<const float*> xf;
  xbuf.resize(static_cast<size_t>(nt * n));
  xf.resize(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) {
    neon_widen(xs[t], n, xbuf.data() + t * n);
    xf[t] = xbuf.data() + t * n;
  }
  const NeonFp4Lut lut = neon_fp4_lut();
  thread_local std::vector<float> wbuf;
  if (nt > 1) wbuf.resize(static_cast<size_t>(4 * n));
  tail.resize(static_cast<size_t>(4 * nt));
  const uint8_t* pb[4];
  const uint8_t* ps[4];
  for (int64_t r = 0; r < nrows; r += 4) {
    // A last tile of k < 4 rows repeats its last row and keeps k results.
    const int k = static_cast<int>(std::min<int64_t>(4, nrows - r));
    for (int i = 0; i < 4; ++i) {
      pb[i] = blocks + (r + std::min(i, k - 1)) * row_stride_b;
      ps[i] = scales + (r + std::min(i, k - 1)) * row_stride_s;
    }
    float* o = k == 4 ? out + r * out_stride : tail.data();
    const int64_t os = k == 4 ? out_stride : nt;
    if (nt == 1) {
      neon_mx_tile_1(pb, ps, G, xf[0], o, os);
    } else {
      // Several tokens: decode the 4 rows once, reuse them for every token.
      for (int i = 0; i < 4; ++i)
        for (int64_t g = 0; g < G; ++g) {
          float32x4_t w[8];
          neon_decode_block(pb[i] + g * 16, lut, w);
          for (int j = 0; j < 8; ++j) vst1q_f32(wbuf.data() + i * n + g * kBlock + 4 * j, w[j]);
        }
      int t = 0;
      for (; t + 4 <= nt; t += 4) neon_mx_tile_dec<4>(wbuf.data(), n, ps, G, xf.data() + t, o + t, os);
      for (; t < nt; ++t) neon_mx_tile_dec<1>(wbuf.data(), n, ps, G, xf.data() + t, o + t, os);
    }
    if (k < 4)
      for (int i = 0; i < k; ++i)
        for (int t = 0; t < nt; ++t) out[(r + i) * out_stride + t] = tail[i * nt + t];
  }
}

// ---- dense bf16 x bf16 -> fp32 sums ----
// NR weight rows (bf16, ldw) against NT fp32 x rows (ldx); out[r*os + t]. Two accumulators per pair.
template <int NR, int NT>
void neon_dense_tile(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t D, float* out,
                     int64_t os) {
  float32x4_t acc[NR][NT][2];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t][0] = acc[r][t][1] = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= D; i += 8) {
    float32x4_t x0[NT], x1[NT];
    for (int t = 0; t < NT; ++t) {
      x0[t] = vld1q_f32(x + t * ldx + i);
      x1[t] = vld1q_f32(x + t * ldx + i + 4);
    }
    for (int r = 0; r < NR; ++r) {
      __builtin_prefetch(w + (r + NR) * ldw + i);
      const uint16x8_t wv = vld1q_u16(w + r * ldw + i);
      const float32x4_t w0 = neon_bf16_lo(wv), w1 = neon_bf16_hi(wv);
      for (int t = 0; t < NT; ++t) {
        acc[r][t][0] = vfmaq_f32(acc[r][t][0], w0, x0[t]);
        acc[r][t][1] = vfmaq_f32(acc[r][t][1], w1, x1[t]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) {
      float s = vaddvq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1]));
      for (int64_t k = i; k < D; ++k) s += bf16_to_f32(w[r * ldw + k]) * x[t * ldx + k];
      out[r * os + t] = s;
    }
}

struct NeonDense {  // dense_rows_tiled's tile: 4 rows x 2 tokens for prefill (x rows fp32, stride D)
  using X = float;
  static constexpr int kRows = 4, kToks = 2;
  template <int NR, int NT>
  static void tile(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t D, float* out, int64_t os) {
    neon_dense_tile<NR, NT>(w, ldw, x, ldx, D, out, os);
  }
};

// x [T, D] widened to fp32 once per lk_linear_bf16 call (not once per 64-row chunk).
const void* dense_prepare_neon(const uint16_t* x, int64_t T, int64_t D, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(T * D));
  neon_widen(x, T * D, buf.data());
  return buf.data();
}

void dense_rows_neon(const uint16_t* w, int64_t nrows, const void* x, int64_t T, int64_t D, float* out, int64_t os) {
  dense_rows_tiled<NeonDense>(w, nrows, static_cast<const float*>(x), D, T, D, out, os);
}

// ---- decode attention ----
// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp); x < -87.3 gives 0. The same operations as the
// AVX-512 path's exp_neg (round to nearest even, 2^n built in the exponent field; n >= -126).
inline float32x4_t neon_exp_neg(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-87.3f);
  const uint32x4_t tiny = vcltq_f32(x, lo);
  x = vmaxq_f32(x, lo);
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500E-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507E-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073E-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894E-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459E-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201E-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(p, r), r);
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), tiny));
}

// One bf16 row of 4*nd values (nd even) -> nd vectors of 4 fp32 (exact).
inline void neon_row_f32(const uint16_t* src, int nd, float32x4_t* dst) {
  for (int j = 0; j < nd; j += 2) {
    const uint16x8_t u = vld1q_u16(src + 4 * j);
    dst[j] = neon_bf16_lo(u);
    dst[j + 1] = neon_bf16_hi(u);
  }
}

// One query against S keys for one kv head: q [G, d] bf16, k/v rows k + s*ld (d bf16), sinks [G] f32.
// scores (fp32 sums of exact bf16 products) * scale, softmax over [scores, sink], o = probs @ v (fp32),
// rounded to bf16 into out [G, d]. d a multiple of 16 up to 64, G up to 16 (checked by the caller).
void attn_head_neon(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t ld, int64_t S, int G, int d,
                    const float* sinks, float scale, uint16_t* out) {
  thread_local std::vector<float> sc;
  const int64_t Sp = (S + 3) / 4 * 4;
  sc.resize(static_cast<size_t>(G * Sp));
  const int nd = d / 4;  // <= 16
  float32x4_t qf[16][16];
  for (int g = 0; g < G; ++g) neon_row_f32(q + g * d, nd, qf[g]);
  for (int64_t s = 0; s < S; ++s) {
    float32x4_t kf[16];
    neon_row_f32(k + s * ld, nd, kf);
    for (int g = 0; g < G; ++g) {
      float32x4_t a0 = vmulq_f32(qf[g][0], kf[0]), a1 = vmulq_f32(qf[g][1], kf[1]);
      for (int j = 2; j < nd; j += 2) {
        a0 = vfmaq_f32(a0, qf[g][j], kf[j]);
        a1 = vfmaq_f32(a1, qf[g][j + 1], kf[j + 1]);
      }
      sc[g * Sp + s] = vaddvq_f32(vaddq_f32(a0, a1)) * scale;
    }
  }
  for (int g = 0; g < G; ++g) {
    float* row = sc.data() + g * Sp;
    for (int64_t s = S; s < Sp; ++s) row[s] = -INFINITY;
    float32x4_t mv = vdupq_n_f32(sinks[g]);
    for (int64_t s = 0; s < Sp; s += 4) mv = vmaxq_f32(mv, vld1q_f32(row + s));
    const float m = vmaxvq_f32(mv);
    const float32x4_t mm = vdupq_n_f32(m);
    float32x4_t sum = vdupq_n_f32(0.0f);
    for (int64_t s = 0; s < Sp; s += 4) {
      const float32x4_t e = neon_exp_neg(vsubq_f32(vld1q_f32(row + s), mm));
      vst1q_f32(row + s, e);
      sum = vaddq_f32(sum, e);
    }
    const float sink_e = vgetq_lane_f32(neon_exp_neg(vdupq_n_f32(sinks[g] - m)), 0);
    const float32x4_t inv = vdupq_n_f32(1.0f / (vaddvq_f32(sum) + sink_e));
    for (int64_t s = 0; s < Sp; s += 4) vst1q_f32(row + s, vmulq_f32(vld1q_f32(row + s), inv));
  }
  float32x4_t acc[16][16];
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) acc[g][j] = vdupq_n_f32(0.0f);
  for (int64_t s = 0; s < S; ++s) {
    float32x4_t vf[16];
    neon_row_f32(v + s * ld, nd, vf);
    for (int g = 0; g < G; ++g) {
      const float32x4_t p = vdupq_n_f32(sc[g * Sp + s]);
      for (int j = 0; j < nd; ++j) acc[g][j] = vfmaq_f32(acc[g][j], p, vf[j]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) {
      float tmp[4];
      vst1q_f32(tmp, acc[g][j]);
      for (int i = 0; i < 4; ++i) out[g * d + 4 * j + i] = f32_to_bf16(tmp[i]);
    }
}

// 16 independent chains of 4-lane FMAs.
double fma_probe_neon(int64_t iterations) {
  constexpr int kChains = 16;
  float32x4_t a[kChains];
  for (int j = 0; j < kChains; ++j) a[j] = vdupq_n_f32(1.0f + 0.001f * static_cast<float>(j));
  const float32x4_t m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < kChains; ++j) a[j] = vfmaq_f32(c, a[j], m);
  float32x4_t s = a[0];
  for (int j = 1; j < kChains; ++j) s = vaddq_f32(s, a[j]);
  probe_sink(vaddvq_f32(s));
  return 2.0 * 4.0 * kChains * static_cast<double>(iterations);
}

const Isa kNeon = {LK_PATH_NEON, neon_always, neon_pos, neon_len, rows_neon, dense_prepare_neon, dense_rows_neon,
                   attn_head_neon, fma_probe_neon};

}  // namespace

const Isa* isa_neon() { return &kNeon; }

}  // namespace lk

#else  // not AArch64

namespace lk {
const Isa* isa_neon() { return nullptr; }
}  // namespace lk

#endif
