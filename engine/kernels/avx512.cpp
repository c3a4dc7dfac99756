// Lantern CPU kernels: the AVX-512 BF16 path (x86-64 CPUs with AVX-512 F/BW/VL/DQ and BF16: AMD Zen 4 and
// newer, Intel Sapphire Rapids and newer). Every function is compiled for those ISA extensions through a
// target attribute; lantern_kernels.cpp calls them only when cpu_has_avx512bf16() says the CPU and the OS
// (ZMM state) support them.
//
// MXFP4 rows: vdpbf16ps on nibbles expanded to bf16 with vpermw lookups (activation layout: lane_pos);
// several tokens per expert (prefill): rows decoded once into bf16 with the block scale folded into the
// exponent, then a bf16 dot-product tile over the tokens.
#include "common.h"

#if LK_X86
#include <cpuid.h>
#include <immintrin.h>

namespace lk {
namespace {

constexpr int kGroup = 4;                     // blocks handled per 512-bit step
constexpr int kGroupElems = kBlock * kGroup;  // 128

// Element i of a vector of length n (multiple of 32) -> position in the "lane" layout used by the
// AVX-512 path. A 64-byte load covers 4 blocks (one per 128-bit lane); its 16-bit word 8k+j holds the
// four nibbles of elements 4j..4j+3 of block k. Shifting the words by 0/4/8/12 bits and looking the low
// nibble up with vpermw gives 4 vectors ("runs") of 32 bf16: run r, word 8k+j = element 4j+r of block k.
// So per group of 4 blocks (128 elements) the layout is: position 32*r + 8*k + j.
int64_t lane_pos(int64_t i) {
  const int64_t g = i / kBlock, e = i % kBlock;
  const int64_t q = g / kGroup, k = g % kGroup;
  return q * kGroupElems + (e % 4) * 32 + 8 * k + e / 4;
}

#define LK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

// NR rows x NT tokens. Rows: pointers to packed bytes / scales; xs: lane-layout bf16 vectors
// (length ngroups*128, zero padded). out[r*out_stride + t] = dot (fp32, no bias).
template <int NR, int NT>
LK_TARGET void tile_avx512(const uint8_t* const* rb, const uint8_t* const* rs, int64_t G,
                           const uint16_t* const* xs, float* out, int64_t out_stride, int64_t pf_b, int64_t pf_s) {
  // bf16 bit patterns of the 16 E2M1 codes, twice (vpermw indexes with the low 5 bits of each word).
  const __m512i lut = _mm512_set_epi16(
      (short)0xc0c0, (short)0xc080, (short)0xc040, (short)0xc000, (short)0xbfc0, (short)0xbf80, (short)0xbf00,
      (short)0x8000, 0x40c0, 0x4080, 0x4040, 0x4000, 0x3fc0, 0x3f80, 0x3f00, 0x0000, (short)0xc0c0,
      (short)0xc080, (short)0xc040, (short)0xc000, (short)0xbfc0, (short)0xbf80, (short)0xbf00, (short)0x8000,
      0x40c0, 0x4080, 0x4040, 0x4000, 0x3fc0, 0x3f80, 0x3f00, 0x0000);
  // Scale byte k of a group (block k = 128-bit lane k) into the low byte of every dword of lane k: one
  // in-lane byte shuffle of the 4 bytes broadcast (cheaper than a zero-extend plus a cross-lane permute).
  const __m512i sshuf = _mm512_set_epi8(-1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3,  //
                                        -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2,  //
                                        -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1,  //
                                        -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0);
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();

  const int64_t ngroups = (G + kGroup - 1) / kGroup;
  for (int64_t q = 0; q < ngroups; ++q) {
    const int64_t nb = std::min<int64_t>(kGroup, G - q * kGroup);  // blocks in this group
    __m512i w[NR][4];
    __m512 sc[NR];
    for (int r = 0; r < NR; ++r) {
      // Rows are short (1440 B at D=2880) and read 4 at a time: too short for the hardware prefetcher,
      // so fetch the same place in the next tile's rows (contiguous, pf_b bytes ahead) explicitly.
      _mm_prefetch(reinterpret_cast<const char*>(rb[r] + q * kGroup * 16 + pf_b), _MM_HINT_T1);
      if ((q & 15) == 0) _mm_prefetch(reinterpret_cast<const char*>(rs[r] + q * kGroup + pf_s), _MM_HINT_T0);
      __m512i v, s4;
      if (nb == kGroup) {
        v = _mm512_loadu_si512(rb[r] + q * kGroup * 16);
        int32_t s_bytes;
        std::memcpy(&s_bytes, rs[r] + q * kGroup, 4);
        s4 = _mm512_set1_epi32(s_bytes);
      } else {  // last, partial group: never read past the row's end
        v = _mm512_maskz_loadu_epi8(nb * 16 == 64 ? ~0ull : ((1ull << (nb * 16)) - 1), rb[r] + q * kGroup * 16);
        s4 = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << nb) - 1), rs[r] + q * kGroup));
      }
      w[r][0] = _mm512_permutexvar_epi16(v, lut);
      w[r][1] = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), lut);
      w[r][2] = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 8), lut);
      w[r][3] = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 12), lut);
      const __m512i s32 = _mm512_shuffle_epi8(s4, sshuf);
      sc[r] = _mm512_castsi512_ps(_mm512_slli_epi32(s32, 23));
      // s == 0 is 2^-127 (a denormal, like e8m0()), not the 0.0 the shift gives
      sc[r] = _mm512_mask_mov_ps(sc[r], _mm512_cmpeq_epi32_mask(s32, _mm512_setzero_si512()),
                                 _mm512_castsi512_ps(_mm512_set1_epi32(0x00400000)));
    }
    for (int t = 0; t < NT; ++t) {
      const uint16_t* xq = xs[t] + q * kGroupElems;
      __m512bh x0 = (__m512bh)_mm512_loadu_si512(xq);
      __m512bh x1 = (__m512bh)_mm512_loadu_si512(xq + 32);
      __m512bh x2 = (__m512bh)_mm512_loadu_si512(xq + 64);
      __m512bh x3 = (__m512bh)_mm512_loadu_si512(xq + 96);
      for (int r = 0; r < NR; ++r) {
        __m512 pa = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[r][0], x0);
        __m512 pb = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[r][1], x1);
        pa = _mm512_dpbf16_ps(pa, (__m512bh)w[r][2], x2);
        pb = _mm512_dpbf16_ps(pb, (__m512bh)w[r][3], x3);
        acc[r][t] = _mm512_fmadd_ps(_mm512_add_ps(pa, pb), sc[r], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) out[r * out_stride + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// Many tokens (prefill): decode NR rows once into bf16 with the block scale folded into the exponent
// (exact for scales 2..252: w * 2^(s-127) stays a normal bf16), then a plain bf16 dot-product tile over
// the tokens. Same products as tile_avx512; one fp32 accumulator per (row, token) instead of per group.
// Returns false (caller uses tile_avx512) when a row has a scale outside 2..252.
LK_TARGET bool decode_rows_scaled(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                                  int64_t row_stride_s, int nr, uint16_t* wbuf, int64_t xlen) {
  for (int r = 0; r < nr; ++r) {
    const uint8_t* sr = scales + r * row_stride_s;
    for (int64_t g = 0; g < G; ++g)
      if (sr[g] < 2 || sr[g] > 252) return false;
  }
  const __m512i lut = _mm512_set_epi16(
      (short)0xc0c0, (short)0xc080, (short)0xc040, (short)0xc000, (short)0xbfc0, (short)0xbf80, (short)0xbf00,
      (short)0x8000, 0x40c0, 0x4080, 0x4040, 0x4000, 0x3fc0, 0x3f80, 0x3f00, 0x0000, (short)0xc0c0,
      (short)0xc080, (short)0xc040, (short)0xc000, (short)0xbfc0, (short)0xbf80, (short)0xbf00, (short)0x8000,
      0x40c0, 0x4080, 0x4040, 0x4000, 0x3fc0, 0x3f80, 0x3f00, 0x0000);
  const __m512i sidx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i mag = _mm512_set1_epi16(0x7fff);
  const int64_t ngroups = (G + kGroup - 1) / kGroup;
  for (int r = 0; r < nr; ++r) {
    const uint8_t* br = blocks + r * row_stride_b;
    const uint8_t* sr = scales + r * row_stride_s;
    uint16_t* wr = wbuf + r * xlen;
    for (int64_t q = 0; q < ngroups; ++q) {
      const int64_t nb = std::min<int64_t>(kGroup, G - q * kGroup);
      const __mmask64 bmask = nb == kGroup ? ~0ull : ((1ull << (nb * 16)) - 1);
      const __mmask16 smask = static_cast<__mmask16>((1u << nb) - 1);
      const __m512i v = _mm512_maskz_loadu_epi8(bmask, br + q * kGroup * 16);
      __m512i s32 = _mm512_permutexvar_epi32(sidx, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(smask, sr + q * kGroup)));
      // exponent offset (s - 127) << 7 in both 16-bit halves of each dword (lane k = block k)
      __m512i off = _mm512_and_si512(_mm512_slli_epi32(_mm512_sub_epi32(s32, _mm512_set1_epi32(127)), 7),
                                     _mm512_set1_epi32(0xffff));
      off = _mm512_or_si512(off, _mm512_slli_epi32(off, 16));
      const __m512i w[4] = {_mm512_permutexvar_epi16(v, lut), _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), lut),
                            _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 8), lut),
                            _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 12), lut)};
      for (int j = 0; j < 4; ++j) {
        const __mmask32 nz = _mm512_test_epi16_mask(w[j], mag);
        _mm512_storeu_si512(wr + q * kGroupElems + 32 * j, _mm512_mask_add_epi16(w[j], nz, w[j], off));
      }
    }
  }
  return true;
}

template <int NR, int NT>
LK_TARGET void scaled_tile(const uint16_t* wbuf, int64_t xlen, const uint16_t* const* xs, float* out,
                           int64_t out_stride) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < xlen; i += 32) {
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = (__m512bh)_mm512_loadu_si512(xs[t] + i);
    for (int r = 0; r < NR; ++r) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(wbuf + r * xlen + i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) out[r * out_stride + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// nrows rows starting at blocks/scales, against nt vectors; out[r*out_stride + t].
LK_TARGET void rows_avx512(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                           int64_t row_stride_s, int64_t nrows, const uint16_t* const* xs, int nt, float* out,
                           int64_t out_stride) {
  int64_t r = 0;
  auto ptrs = [&](int64_t r0, int n, const uint8_t** pb, const uint8_t** ps) {
    for (int i = 0; i < n; ++i) {
      pb[i] = blocks + (r0 + i) * row_stride_b;
      ps[i] = scales + (r0 + i) * row_stride_s;
    }
  };
  const uint8_t* pb[4];
  const uint8_t* ps[4];
  if (nt == 1) {
    for (; r + 4 <= nrows; r += 4) {
      ptrs(r, 4, pb, ps);
      tile_avx512<4, 1>(pb, ps, G, xs, out + r * out_stride, out_stride, 4 * row_stride_b, 4 * row_stride_s);
    }
    for (; r < nrows; ++r) {
      ptrs(r, 1, pb, ps);
      tile_avx512<1, 1>(pb, ps, G, xs, out + r * out_stride, out_stride, 1 * row_stride_b, 1 * row_stride_s);
    }
    return;
  }
  if (nt >= 8) {
    const int64_t xlen = ((G + kGroup - 1) / kGroup) * kGroupElems;
    thread_local std::vector<uint16_t> wbuf;
    wbuf.resize(static_cast<size_t>(4 * xlen));
    for (; r + 4 <= nrows; r += 4) {
      if (!decode_rows_scaled(blocks + r * row_stride_b, scales + r * row_stride_s, G, row_stride_b, row_stride_s, 4,
                              wbuf.data(), xlen))
        break;  // unusual scales: the per-group path below handles the rest
      int t = 0;
      for (; t + 4 <= nt; t += 4) scaled_tile<4, 4>(wbuf.data(), xlen, xs + t, out + r * out_stride + t, out_stride);
      for (; t < nt; ++t) scaled_tile<4, 1>(wbuf.data(), xlen, xs + t, out + r * out_stride + t, out_stride);
    }
  }
  for (; r + 2 <= nrows; r += 2) {
    ptrs(r, 2, pb, ps);
    int t = 0;
    for (; t + 8 <= nt; t += 8) tile_avx512<2, 8>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 2 * row_stride_b, 2 * row_stride_s);
    for (; t + 4 <= nt; t += 4) tile_avx512<2, 4>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 2 * row_stride_b, 2 * row_stride_s);
    for (; t + 2 <= nt; t += 2) tile_avx512<2, 2>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 2 * row_stride_b, 2 * row_stride_s);
    for (; t < nt; ++t) tile_avx512<2, 1>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 2 * row_stride_b, 2 * row_stride_s);
  }
  for (; r < nrows; ++r) {
    ptrs(r, 1, pb, ps);
    int t = 0;
    for (; t + 8 <= nt; t += 8) tile_avx512<1, 8>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 1 * row_stride_b, 1 * row_stride_s);
    for (; t < nt; ++t) tile_avx512<1, 1>(pb, ps, G, xs + t, out + r * out_stride + t, out_stride, 1 * row_stride_b, 1 * row_stride_s);
  }
}

// ---- dense bf16 x bf16 -> fp32 sums (qkv / out / router / unembedding) ----
// x rows [NT][D] bf16, weight rows [NR][D] bf16 (D even); out[r*os + t] = fp32 dot.
template <int NR, int NT>
LK_TARGET void dense_tile(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t D, float* out,
                          int64_t os) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= D; i += 32) {
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = (__m512bh)_mm512_loadu_si512(x + t * ldx + i);
    for (int r = 0; r < NR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * ldw + i), _MM_HINT_T1);
      __m512bh wv = (__m512bh)_mm512_loadu_si512(w + r * ldw + i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  if (i < D) {
    const __mmask32 m = static_cast<__mmask32>((1ull << (D - i)) - 1);
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = (__m512bh)_mm512_maskz_loadu_epi16(m, x + t * ldx + i);
    for (int r = 0; r < NR; ++r) {
      __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * ldw + i);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) out[r * os + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp); x < -87.3 gives 0.
LK_TARGET inline __m512 exp_neg(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512 y = _mm512_scalef_ps(p, n);
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), y);
}

// One query against S keys for one kv head: q [G, d] bf16, k/v rows k + s*ld (d bf16), sinks [G] f32.
// scores (fp32 sums of exact bf16 products) * scale, softmax over [scores, sink], o = probs @ v (fp32),
// rounded to bf16 into out [G, d].
LK_TARGET void attn_head_avx512(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t ld, int64_t S,
                                int G, int d, const float* sinks, float scale, uint16_t* out) {
  thread_local std::vector<float> sc;
  const int64_t Sp = (S + 15) / 16 * 16;
  sc.resize(static_cast<size_t>(G * Sp));
  const int nd = d / 16;
  __m512 qf[16][4];
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j)
      qf[g][j] = _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(q + g * d + j * 16))), 16));
  for (int64_t s = 0; s < S; ++s) {
    __m512 kf[4];
    for (int j = 0; j < nd; ++j)
      kf[j] = _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(k + s * ld + j * 16))), 16));
    for (int g = 0; g < G; ++g) {
      __m512 a = _mm512_mul_ps(qf[g][0], kf[0]);
      for (int j = 1; j < nd; ++j) a = _mm512_fmadd_ps(qf[g][j], kf[j], a);
      sc[g * Sp + s] = _mm512_reduce_add_ps(a) * scale;
    }
  }
  for (int g = 0; g < G; ++g) {
    float* row = sc.data() + g * Sp;
    for (int64_t s = S; s < Sp; ++s) row[s] = -INFINITY;
    __m512 mv = _mm512_set1_ps(sinks[g]);
    for (int64_t s = 0; s < Sp; s += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(row + s));
    const float m = _mm512_reduce_max_ps(mv);
    const __m512 mm = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t s = 0; s < Sp; s += 16) {
      const __m512 e = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(row + s), mm));
      _mm512_storeu_ps(row + s, e);
      sum = _mm512_add_ps(sum, e);
    }
    const float sink_e = _mm512_cvtss_f32(exp_neg(_mm512_set1_ps(sinks[g] - m)));
    const __m512 inv = _mm512_set1_ps(1.0f / (_mm512_reduce_add_ps(sum) + sink_e));
    for (int64_t s = 0; s < Sp; s += 16) _mm512_storeu_ps(row + s, _mm512_mul_ps(_mm512_loadu_ps(row + s), inv));
  }
  __m512 acc[16][4];
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) acc[g][j] = _mm512_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    __m512 vf[4];
    for (int j = 0; j < nd; ++j)
      vf[j] = _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(v + s * ld + j * 16))), 16));
    for (int g = 0; g < G; ++g) {
      const __m512 p = _mm512_set1_ps(sc[g * Sp + s]);
      for (int j = 0; j < nd; ++j) acc[g][j] = _mm512_fmadd_ps(p, vf[j], acc[g][j]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < nd; ++j) {
      alignas(64) float tmp[16];
      _mm512_store_ps(tmp, acc[g][j]);
      for (int i = 0; i < 16; ++i) out[g * d + j * 16 + i] = f32_to_bf16(tmp[i]);
    }
}

bool cpu_has_avx512bf16() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  if (!(f && dq && bw && vl)) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  const bool bf16 = a & (1u << 5);
  // OS must save zmm state (XCR0 bits 1,2,5,6,7).
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return bf16 && (lo & 0xe6) == 0xe6;
}

int64_t lane_len(int64_t G) { return ((G + kGroup - 1) / kGroup) * kGroupElems; }

const void* dense_prepare_avx512(const uint16_t* x, int64_t, int64_t, std::vector<float>&) { return x; }

struct Avx512Dense {  // dense_rows_tiled's tile: 4 rows x 4 tokens for prefill
  using X = uint16_t;
  static constexpr int kRows = 4, kToks = 4;
  template <int NR, int NT>
  LK_TARGET static void tile(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t D, float* out,
                             int64_t os) {
    dense_tile<NR, NT>(w, ldw, x, ldx, D, out, os);
  }
};

LK_TARGET void dense_rows_avx512(const uint16_t* w, int64_t nrows, const void* x, int64_t T, int64_t D, float* out,
                                 int64_t os) {
  dense_rows_tiled<Avx512Dense>(w, nrows, static_cast<const uint16_t*>(x), D, T, D, out, os);
}

// 16 independent chains of 16-lane FMAs.
LK_TARGET double fma_probe_avx512(int64_t iterations) {
  constexpr int kChains = 16;
  __m512 a[kChains];
  for (int j = 0; j < kChains; ++j) a[j] = _mm512_set1_ps(1.0f + 0.001f * static_cast<float>(j));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < kChains; ++j) a[j] = _mm512_fmadd_ps(a[j], m, c);
  __m512 s = a[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, a[j]);
  probe_sink(_mm512_reduce_add_ps(s));
  return 2.0 * 16.0 * kChains * static_cast<double>(iterations);
}

const Isa kAvx512 = {LK_PATH_AVX512, cpu_has_avx512bf16, lane_pos, lane_len, rows_avx512, dense_prepare_avx512,
                     dense_rows_avx512, attn_head_avx512, fma_probe_avx512};

}  // namespace

const Isa* isa_avx512() { return &kAvx512; }

}  // namespace lk

#else  // not x86-64

namespace lk {
const Isa* isa_avx512() { return nullptr; }
}  // namespace lk

#endif
