// Lantern CPU kernels: the AVX2 + FMA path (x86-64 CPUs without AVX-512 BF16: most Intel laptops, AMD
// before Zen 4). Every function is compiled for AVX2 + FMA through a target attribute (no global -mavx2),
// so the one library still loads on every x86-64 CPU; lantern_kernels.cpp only calls them when
// cpu_has_avx2_fma() says the CPU and the OS (YMM state) support them.
#include "common.h"

#if LK_X86
#include <cpuid.h>
#include <immintrin.h>

namespace lk {
namespace {

#define LK_AVX2 __attribute__((target("avx2,fma")))

bool cpu_has_avx2_fma() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(fma && osxsave && avx)) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(b & (1u << 5))) return false;  // AVX2
  // The OS must save XMM and YMM state (XCR0 bits 1 and 2); xgetbv is only legal with OSXSAVE.
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0x6) == 0x6;
}

// ---- MXFP4 rows -------------------------------------------------------------------------------------
// A 32-byte load holds a pair of packed blocks (128-bit lane 0: the first block, lane 1: the second; byte c
// of a block holds elements 2c (low nibble) and 2c+1 (high nibble)). vpshufb looks the low and the high
// byte of each nibble's bf16 pattern up; interleaving them (vpunpck{l,h}bw) gives 16-bit bf16 words, and a
// 16-bit left shift of each dword / masking its low half turns the two words of a dword into fp32. That
// yields 8 vectors of 8 fp32 per pair: vector m, lane k = element base[m] + 4*(k%4) of block k/4 with
// base = {0, 2, 16, 18, 1, 3, 17, 19}. Activations use the same layout: position 8m + k of each
// 64-element pair (lanes 0-3 belong to the first block, 4-7 to the second: one scale per half).
constexpr int kPair = 2 * kBlock;

int64_t avx2_pos(int64_t i) {
  const int64_t p = i / kPair, e = i % kPair, blk = e / kBlock, el = e % kBlock;
  const int64_t q = el % 4, j = (el % 16) / 4, h = el / 16;
  const int64_t m = (q & 1) * 4 + h * 2 + (q >> 1);
  return p * kPair + 8 * m + blk * 4 + j;
}

int64_t avx2_xlen(int64_t G) { return (G + 1) / 2 * kPair; }  // an odd last block is zero padded

struct E8m0Table {
  alignas(16) float v[256][4];  // four copies: a pair's scale vector is two 16-byte loads
  E8m0Table() {
    for (int s = 0; s < 256; ++s)
      for (int i = 0; i < 4; ++i) v[s][i] = e8m0(static_cast<uint8_t>(s));  // the scalar path's values exactly
  }
};

inline const float (*e8m0_table())[4] {
  static const E8m0Table t;
  return t.v;
}

struct Fp4Luts {
  __m256i lo, hi, nib, top;
};

// bf16 patterns of the 16 E2M1 codes (+0 .5 1 1.5 2 3 4 6, then the same negated): low and high bytes.
LK_AVX2 inline Fp4Luts fp4_luts() {
  const __m128i lo = _mm_setr_epi8(0x00, 0x00, (char)0x80, (char)0xc0, 0x00, 0x40, (char)0x80, (char)0xc0, 0x00,
                                   0x00, (char)0x80, (char)0xc0, 0x00, 0x40, (char)0x80, (char)0xc0);
  const __m128i hi = _mm_setr_epi8(0x00, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40, (char)0x80, (char)0xbf,
                                   (char)0xbf, (char)0xbf, (char)0xc0, (char)0xc0, (char)0xc0, (char)0xc0);
  return {_mm256_broadcastsi128_si256(lo), _mm256_broadcastsi128_si256(hi), _mm256_set1_epi8(0x0f),
          _mm256_set1_epi32(static_cast<int>(0xffff0000u))};
}

// The 64 exact FP4 values of a pair of blocks as fp32, in the layout above.
LK_AVX2 inline void fp4_decode_pair(__m256i v, const Fp4Luts& L, __m256 f[8]) {
  const __m256i nl = _mm256_and_si256(v, L.nib);
  const __m256i nh = _mm256_and_si256(_mm256_srli_epi16(v, 4), L.nib);
  const __m256i ll = _mm256_shuffle_epi8(L.lo, nl), lh = _mm256_shuffle_epi8(L.hi, nl);
  const __m256i hl = _mm256_shuffle_epi8(L.lo, nh), hh = _mm256_shuffle_epi8(L.hi, nh);
  const __m256i w[4] = {_mm256_unpacklo_epi8(ll, lh), _mm256_unpackhi_epi8(ll, lh), _mm256_unpacklo_epi8(hl, hh),
                        _mm256_unpackhi_epi8(hl, hh)};
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = _mm256_castsi256_ps(_mm256_slli_epi32(w[i], 16));
    f[2 * i + 1] = _mm256_castsi256_ps(_mm256_and_si256(w[i], L.top));
  }
}

LK_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

LK_AVX2 inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// 32 packed bytes of a pair of blocks (or 16 for a lone last block, upper half zero).
LK_AVX2 inline __m256i load_pair(const uint8_t* p, bool full) {
  return full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
              : _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), 0);
}

// Block scales of a pair: lanes 0-3 the first block's, 4-7 the second's (0 for a missing second block).
LK_AVX2 inline __m256 pair_scale(const float (*tbl)[4], const uint8_t* s) {
  return _mm256_loadu2_m128(tbl[s[1]], tbl[s[0]]);
}

LK_AVX2 inline __m256 lone_scale(const float (*tbl)[4], const uint8_t* s) {
  return _mm256_insertf128_ps(_mm256_setzero_ps(), _mm_load_ps(tbl[s[0]]), 0);  // no second block: 0
}

// Dot of a decoded pair (f, from fp4_decode_pair) with x (fp32, pair layout) -> 8 partial sums (fp32),
// before the block scale.
LK_AVX2 inline __m256 decoded_dot(const __m256 f[8], const float* x) {
  __m256 pa = _mm256_mul_ps(f[0], _mm256_loadu_ps(x));  // two chains
  __m256 pb = _mm256_mul_ps(f[1], _mm256_loadu_ps(x + 8));
  for (int m = 2; m < 8; m += 2) {
    pa = _mm256_fmadd_ps(f[m], _mm256_loadu_ps(x + 8 * m), pa);
    pb = _mm256_fmadd_ps(f[m + 1], _mm256_loadu_ps(x + 8 * m + 8), pb);
  }
  return _mm256_add_ps(pa, pb);
}

// Dot of one packed pair of blocks with x (fp32, pair layout) -> 8 partial sums (fp32), before the block scale.
LK_AVX2 inline __m256 pair_dot(__m256i v, const Fp4Luts& L, const float* x) {
  __m256 f[8];
  fp4_decode_pair(v, L, f);
  return decoded_dot(f, x);
}

// NR rows x one token: out[r*out_stride] = sum over blocks of (block dot) * e8m0(scale). pf: bytes from a
// row to the same place in the next tile's rows (prefetched: rows are too short for the hardware prefetcher).
template <int NR>
LK_AVX2 void mx_tile_avx2(const uint8_t* const* rb, const uint8_t* const* rs, int64_t G, const float* x, float* out,
                          int64_t out_stride, int64_t pf) {
  const Fp4Luts L = fp4_luts();
  const float(*tbl)[4] = e8m0_table();
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
  const int64_t nfull = G / 2;
  for (int64_t p = 0; p < nfull; ++p) {
    const float* xp = x + p * kPair;
    for (int r = 0; r < NR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rb[r] + p * 32 + pf), _MM_HINT_T1);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb[r] + p * 32));
      acc[r] = _mm256_fmadd_ps(pair_dot(v, L, xp), pair_scale(tbl, rs[r] + 2 * p), acc[r]);
    }
  }
  if (G & 1) {
    const float* xp = x + nfull * kPair;
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(pair_dot(load_pair(rb[r] + nfull * 32, false), L, xp),
                               lone_scale(tbl, rs[r] + 2 * nfull), acc[r]);
  }
  for (int r = 0; r < NR; ++r) out[r * out_stride] = hsum8(acc[r]);
}


// A few tokens (2..3 per expert): NR rows x NT tokens, each pair decoded once for all NT tokens; otherwise
// as mx_tile_avx2.
template <int NR, int NT>
LK_AVX2 void mx_tile_multi_avx2(const uint8_t* const* rb, const uint8_t* const* rs, int64_t G, const float* const* xs,
                          float* out, int64_t out_stride, int64_t pf) {
  const Fp4Luts L = fp4_luts();
  const float(*tbl)[4] = e8m0_table();
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const int64_t nfull = G / 2;
  for (int64_t p = 0; p < nfull; ++p) {
    for (int r = 0; r < NR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rb[r] + p * 32 + pf), _MM_HINT_T1);
      __m256 f[8];
      fp4_decode_pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb[r] + p * 32)), L, f);
      const __m256 sc = pair_scale(tbl, rs[r] + 2 * p);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(decoded_dot(f, xs[t] + p * kPair), sc, acc[r][t]);
    }
  }
  if (G & 1) {
    for (int r = 0; r < NR; ++r) {
      __m256 f[8];
      fp4_decode_pair(load_pair(rb[r] + nfull * 32, false), L, f);
      const __m256 sc = lone_scale(tbl, rs[r] + 2 * nfull);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(decoded_dot(f, xs[t] + nfull * kPair), sc, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) out[r * out_stride + t] = hsum8(acc[r][t]);
}

// Many tokens (prefill): decode nr rows once to fp32 with the block scale folded in (exact for scales
// 2..252: every FP4 value times 2^(s-127) is then a normal fp32), in the pair layout. Returns false (the
// caller uses mx_tile_avx2) when a row has a scale outside 2..252.
LK_AVX2 bool decode_rows_avx2(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                              int64_t row_stride_s, int nr, float* wbuf, int64_t xlen) {
  for (int r = 0; r < nr; ++r) {
    const uint8_t* sr = scales + r * row_stride_s;
    for (int64_t g = 0; g < G; ++g)
      if (sr[g] < 2 || sr[g] > 252) return false;
  }
  const Fp4Luts L = fp4_luts();
  const float(*tbl)[4] = e8m0_table();
  const int64_t npairs = (G + 1) / 2;
  for (int r = 0; r < nr; ++r) {
    const uint8_t* br = blocks + r * row_stride_b;
    const uint8_t* sr = scales + r * row_stride_s;
    float* wr = wbuf + r * xlen;
    for (int64_t p = 0; p < npairs; ++p) {
      const bool full = 2 * p + 1 < G;
      const __m256 sc = full ? pair_scale(tbl, sr + 2 * p) : lone_scale(tbl, sr + 2 * p);
      __m256 f[8];
      fp4_decode_pair(load_pair(br + p * 32, full), L, f);
      for (int m = 0; m < 8; ++m) _mm256_storeu_ps(wr + p * kPair + 8 * m, _mm256_mul_ps(f[m], sc));
    }
  }
  return true;
}

// NR decoded rows (fp32, wbuf + r*xlen) x NT tokens (fp32, pair layout), elements [i0, i1): adds the
// products to acc_io + 8*(t*NR + r) (8 fp32 partial sums each).
template <int NR, int NT>
LK_AVX2 void f32_tile_avx2(const float* wbuf, int64_t xlen, const float* const* xs, int64_t i0, int64_t i1,
                           float* acc_io) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_loadu_ps(acc_io + 8 * (t * NR + r));
  for (int64_t i = i0; i < i1; i += 8) {
    __m256 xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(xs[t] + i);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = _mm256_loadu_ps(wbuf + r * xlen + i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) _mm256_storeu_ps(acc_io + 8 * (t * NR + r), acc[r][t]);
}

// bf16 -> fp32 of n values (n a multiple of 8).
LK_AVX2 inline void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
}

// Same signature and results as rows_scalar; xs are bf16 vectors in the pair layout (length avx2_xlen(G)).
LK_AVX2 void rows_avx2(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                       int64_t row_stride_s, int64_t nrows, const uint16_t* const* xs, int nt, float* out,
                       int64_t out_stride) {
  const int64_t xlen = avx2_xlen(G);
  thread_local std::vector<float> xf;
  thread_local std::vector<const float*> xp;
  xf.resize(static_cast<size_t>(nt * xlen));
  xp.resize(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) {  // activations to fp32 once per call, not per row
    bf16_to_f32_avx2(xs[t], xf.data() + t * xlen, xlen);
    xp[t] = xf.data() + t * xlen;
  }
  const uint8_t* pb[4];
  const uint8_t* ps[4];
  auto ptrs = [&](int64_t r0, int n) {
    for (int i = 0; i < n; ++i) {
      pb[i] = blocks + (r0 + i) * row_stride_b;
      ps[i] = scales + (r0 + i) * row_stride_s;
    }
  };
  int64_t r = 0;
  if (nt >= 4) {
    // Decoded rows (4 x xlen fp32) are reused by every token; the element range is split so that a slice
    // of the rows and of every token's x stays in L1 while all tokens pass over it.
    constexpr int64_t kSlice = 512;
    thread_local std::vector<float> wbuf;
    thread_local std::vector<float> acc;
    wbuf.resize(static_cast<size_t>(4 * xlen));
    acc.resize(static_cast<size_t>(8 * 4 * nt));
    for (; r + 4 <= nrows; r += 4) {
      if (!decode_rows_avx2(blocks + r * row_stride_b, scales + r * row_stride_s, G, row_stride_b, row_stride_s, 4,
                            wbuf.data(), xlen))
        break;  // unusual scales: the per-token tiles below handle the rest
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t i0 = 0; i0 < xlen; i0 += kSlice) {
        const int64_t i1 = std::min(xlen, i0 + kSlice);
        int t = 0;
        for (; t + 3 <= nt; t += 3) f32_tile_avx2<4, 3>(wbuf.data(), xlen, xp.data() + t, i0, i1, acc.data() + 32 * t);
        for (; t < nt; ++t) f32_tile_avx2<4, 1>(wbuf.data(), xlen, xp.data() + t, i0, i1, acc.data() + 32 * t);
      }
      for (int t = 0; t < nt; ++t)
        for (int rr = 0; rr < 4; ++rr)
          out[(r + rr) * out_stride + t] = hsum8(_mm256_loadu_ps(acc.data() + 8 * (4 * t + rr)));
    }
  }
  for (; r + 4 <= nrows; r += 4) {
    ptrs(r, 4);
    int t = 0;
    for (; t + 2 <= nt; t += 2)
      mx_tile_multi_avx2<4, 2>(pb, ps, G, xp.data() + t, out + r * out_stride + t, out_stride, 4 * row_stride_b);
    for (; t < nt; ++t)
      mx_tile_avx2<4>(pb, ps, G, xp[t], out + r * out_stride + t, out_stride, 4 * row_stride_b);
  }
  for (; r < nrows; ++r) {
    ptrs(r, 1);
    for (int t = 0; t < nt; ++t) mx_tile_avx2<1>(pb, ps, G, xp[t], out + r * out_stride + t, out_stride, row_stride_b);
  }
}

// ---- dense bf16 x bf16 -> fp32 sums (lk_linear_bf16) ---------------------------------------------------
// x layout: per 16 elements, the 8 even ones then the 8 odd ones as fp32 (a 32-byte load of 16 bf16 weights
// gives the even ones by a 16-bit left shift of each dword and the odd ones by masking the low half).
inline int64_t dense_pad(int64_t D) { return (D + 15) / 16 * 16; }

LK_AVX2 void dense_x_avx2(const uint16_t* x, int64_t T, int64_t D, float* xf) {  // xf [T, dense_pad(D)]
  const int64_t Dp = dense_pad(D);
  for (int64_t t = 0; t < T; ++t) {
    float* o = xf + t * Dp;
    std::fill(o, o + Dp, 0.0f);
    for (int64_t i = 0; i < D; ++i) o[(i / 16) * 16 + (i % 2) * 8 + (i % 16) / 2] = bf16_to_f32(x[t * D + i]);
  }
}

template <int NR, int NT>
LK_AVX2 inline void dense_step_avx2(const __m256i* wv, const float* xf, int64_t ldx, int64_t i, __m256 (&acc)[NR][NT]) {
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int r = 0; r < NR; ++r) {
    const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(wv[r], 16));   // even elements
    const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(wv[r], hi));     // odd elements
    for (int t = 0; t < NT; ++t) {
      acc[r][t] = _mm256_fmadd_ps(we, _mm256_loadu_ps(xf + t * ldx + i), acc[r][t]);
      acc[r][t] = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xf + t * ldx + i + 8), acc[r][t]);
    }
  }
}

// NR weight rows [D] bf16 (row stride ldw) x NT tokens (xf rows of stride ldx): out[r*os + t] = fp32 dot.
template <int NR, int NT>
LK_AVX2 void dense_tile_avx2(const uint16_t* w, int64_t ldw, const float* xf, int64_t ldx, int64_t D, float* out,
                             int64_t os) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t i = 0;
  __m256i wv[NR];
  for (; i + 16 <= D; i += 16) {
    for (int r = 0; r < NR; ++r) {
      if ((i & 31) == 0) _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * ldw + i), _MM_HINT_T1);
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * ldw + i));
    }
    dense_step_avx2<NR, NT>(wv, xf, ldx, i, acc);
  }
  if (i < D) {  // tail: copy the last few weights into a zero-padded block (never read past a row)
    alignas(32) uint16_t tail[NR][16];
    for (int r = 0; r < NR; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], w + r * ldw + i, static_cast<size_t>(D - i) * sizeof(uint16_t));
      wv[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail[r]));
    }
    dense_step_avx2<NR, NT>(wv, xf, ldx, i, acc);
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) out[r * os + t] = hsum8(acc[r][t]);
}

// ---- decode attention ------------------------------------------------------------------------------------
// exp(x) for x <= 0 (the Cephes expf polynomial of exp_neg, ~1 ulp); x < -87.3 gives 0. 2^n is built by
// adding n to the exponent field (n >= -126 here, so it is a normal fp32).
LK_AVX2 inline __m256 exp_neg_avx2(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

LK_AVX2 inline __m256 bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// attn_head_avx512's math: q [G, d] bf16, k/v rows k + s*ld (d bf16), sinks [G] f32; scores (fp32 sums of
// exact bf16 products) * scale, softmax over [scores, sink], o = probs @ v (fp32), rounded to bf16 into
// out [G, d]. d a multiple of 8 up to 64, G up to 16.
LK_AVX2 void attn_head_avx2(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t ld, int64_t S, int G,
                            int d, const float* sinks, float scale, uint16_t* out) {
  thread_local std::vector<float> sc;
  const int64_t Sp = (S + 7) / 8 * 8;
  sc.resize(static_cast<size_t>(G * Sp));
  const int nd = d / 8;
  __m256 qf[16][8];
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) qf[g][j] = bf16x8(q + g * d + j * 8);
  for (int64_t s = 0; s < S; ++s) {
    __m256 kf[8];
    for (int j = 0; j < nd; ++j) kf[j] = bf16x8(k + s * ld + j * 8);
    for (int g = 0; g < G; ++g) {
      __m256 a = _mm256_mul_ps(qf[g][0], kf[0]);
      for (int j = 1; j < nd; ++j) a = _mm256_fmadd_ps(qf[g][j], kf[j], a);
      sc[g * Sp + s] = hsum8(a) * scale;
    }
  }
  for (int g = 0; g < G; ++g) {
    float* row = sc.data() + g * Sp;
    for (int64_t s = S; s < Sp; ++s) row[s] = -INFINITY;
    __m256 mv = _mm256_set1_ps(sinks[g]);
    for (int64_t s = 0; s < Sp; s += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(row + s));
    const float m = hmax8(mv);
    const __m256 mm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t s = 0; s < Sp; s += 8) {
      const __m256 e = exp_neg_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + s), mm));
      _mm256_storeu_ps(row + s, e);
      sum = _mm256_add_ps(sum, e);
    }
    const float sink_e = _mm256_cvtss_f32(exp_neg_avx2(_mm256_set1_ps(sinks[g] - m)));
    const __m256 inv = _mm256_set1_ps(1.0f / (hsum8(sum) + sink_e));
    for (int64_t s = 0; s < Sp; s += 8) _mm256_storeu_ps(row + s, _mm256_mul_ps(_mm256_loadu_ps(row + s), inv));
  }
  __m256 acc[16][8];
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) acc[g][j] = _mm256_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    __m256 vf[8];
    for (int j = 0; j < nd; ++j) vf[j] = bf16x8(v + s * ld + j * 8);
    for (int g = 0; g < G; ++g) {
      const __m256 p = _mm256_set1_ps(sc[g * Sp + s]);
      for (int j = 0; j < nd; ++j) acc[g][j] = _mm256_fmadd_ps(p, vf[j], acc[g][j]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[g][j]);
      for (int i = 0; i < 8; ++i) out[g * d + j * 8 + i] = f32_to_bf16(tmp[i]);
    }
}

const void* dense_prepare_avx2(const uint16_t* x, int64_t T, int64_t D, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(T * dense_pad(D)));
  dense_x_avx2(x, T, D, buf.data());
  return buf.data();
}

struct Avx2Dense {  // dense_rows_tiled's tile: 2 rows x 4 tokens for prefill (x rows fp32, stride dense_pad(D))
  using X = float;
  static constexpr int kRows = 2, kToks = 4;
  template <int NR, int NT>
  LK_AVX2 static void tile(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t D, float* out,
                           int64_t os) {
    dense_tile_avx2<NR, NT>(w, ldw, x, ldx, D, out, os);
  }
};

// 4 weight rows [D] bf16 (row stride D) widened to fp32 in x's layout (per 16 elements the 8 even ones, then
// the 8 odd ones; zero padded to dense_pad(D)): wf [4, dense_pad(D)].
LK_AVX2 void dense_widen_rows_avx2(const uint16_t* w, int64_t D, float* wf) {
  const int64_t Dp = dense_pad(D);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int r = 0; r < 4; ++r) {
    const uint16_t* row = w + r * D;
    float* o = wf + r * Dp;
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
      _mm256_storeu_ps(o + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      _mm256_storeu_ps(o + i + 8, _mm256_castsi256_ps(_mm256_and_si256(v, hi)));
    }
    if (i < D) {  // the last few weights, zero padded (as dense_tile_avx2's tail)
      alignas(32) uint16_t tail[16] = {0};
      std::memcpy(tail, row + i, static_cast<size_t>(D - i) * sizeof(uint16_t));
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
      _mm256_storeu_ps(o + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      _mm256_storeu_ps(o + i + 8, _mm256_castsi256_ps(_mm256_and_si256(v, hi)));
    }
  }
}

// nrows weight rows against T tokens (x from dense_prepare_avx2); out[r*os + t]. One token, or a few: the
// shared tiling (each tile widens its bf16 weights as it goes). Several tokens (prefill): 4 rows are widened
// to fp32 once, then 4 x 3 fp32 tiles over L1-sized slices of them serve every token: per output the same
// fused multiply-adds in the same order as dense_tile_avx2 (so the same bits), but the widening is done once
// per row instead of once per 4 tokens, and the inner loop is loads and FMAs only.
LK_AVX2 void dense_rows_avx2(const uint16_t* w, int64_t nrows, const void* x, int64_t T, int64_t D, float* out,
                             int64_t os) {
  const float* xf = static_cast<const float*>(x);
  const int64_t Dp = dense_pad(D);
  if (T < 4) {
    dense_rows_tiled<Avx2Dense>(w, nrows, xf, Dp, T, D, out, os);
    return;
  }
  constexpr int64_t kSlice = 512;  // elements: 4 rows + 3 tokens of a slice stay in L1 (14 KB)
  thread_local std::vector<float> wbuf, acc;
  thread_local std::vector<const float*> xp;
  wbuf.resize(static_cast<size_t>(4 * Dp));
  acc.resize(static_cast<size_t>(8 * 4 * T));
  xp.resize(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) xp[t] = xf + t * Dp;
  int64_t r = 0;
  for (; r + 4 <= nrows; r += 4) {
    dense_widen_rows_avx2(w + r * D, D, wbuf.data());
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t i0 = 0; i0 < Dp; i0 += kSlice) {
      const int64_t i1 = std::min(Dp, i0 + kSlice);
      int64_t t = 0;
      for (; t + 3 <= T; t += 3) f32_tile_avx2<4, 3>(wbuf.data(), Dp, xp.data() + t, i0, i1, acc.data() + 32 * t);
      for (; t < T; ++t) f32_tile_avx2<4, 1>(wbuf.data(), Dp, xp.data() + t, i0, i1, acc.data() + 32 * t);
    }
    for (int64_t t = 0; t < T; ++t)
      for (int rr = 0; rr < 4; ++rr) out[(r + rr) * os + t] = hsum8(_mm256_loadu_ps(acc.data() + 8 * (4 * t + rr)));
  }
  for (; r < nrows; ++r)
    for (int64_t t = 0; t < T; ++t) dense_tile_avx2<1, 1>(w + r * D, D, xf + t * Dp, Dp, D, out + r * os + t, os);
}

// 12 independent chains of 8-lane FMAs (two FMA units x 4-5 cycles latency need 8-10 in flight).
LK_AVX2 double fma_probe_avx2(int64_t iterations) {
  constexpr int kChains = 12;
  __m256 a[kChains];
  for (int j = 0; j < kChains; ++j) a[j] = _mm256_set1_ps(1.0f + 0.001f * static_cast<float>(j));
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < kChains; ++j) a[j] = _mm256_fmadd_ps(a[j], m, c);
  __m256 s = a[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, a[j]);
  probe_sink(hsum8(s));
  return 2.0 * 8.0 * kChains * static_cast<double>(iterations);
}

const Isa kAvx2 = {LK_PATH_AVX2, cpu_has_avx2_fma, avx2_pos, avx2_xlen, rows_avx2, dense_prepare_avx2,
                   dense_rows_avx2, attn_head_avx2, fma_probe_avx2};

}  // namespace

const Isa* isa_avx2() { return &kAvx2; }

}  // namespace lk

#else  // not x86-64

namespace lk {
const Isa* isa_avx2() { return nullptr; }
}  // namespace lk

#endif
