// Lantern CPU kernels: the gpt-oss MoE expert block straight from packed MXFP4 weights.
//
// Plain C ABI (loaded with ctypes, no torch headers), built by setup.py as an optional extension.
// Semantics are exactly those of engine/moe.py:moe_experts (see HELPERS.md):
//   u   = h(bf16) . W1[e](mxfp4 -> exact values)  accumulated in fp32, + bias1 (fp32)
//   a   = swiglu(u) in fp32 (gate = even rows, up = odd rows), rounded to bf16
//   y   = a(bf16) . W2[e]  accumulated in fp32, + bias2 (fp32)
//   out = bf16( sum_k w[t,k] * y_k )   (fp32 sum over k in order k = 0..K-1)
// Only the fp32 summation order differs from the pure-torch path.
//
// Paths: AVX-512 BF16 (vdpbf16ps on nibbles expanded to bf16 with vpermw lookups), AVX2 + FMA on other
// x86-64 CPUs (avx2.h: nibbles to bf16 with vpshufb byte tables, fp32 FMAs), NEON on AArch64 (neon.h: table
// lookups to exact fp32 values, fp32 fused multiply-adds) and a portable scalar path.
// Threads: a small work-sharing pool of std::threads (no OpenMP runtime needed).

#ifdef LK_PYTHON_MODULE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <cpuid.h>
#define LK_X86 1
#else
#define LK_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define LK_NEON 1
#else
#define LK_NEON 0
#endif


#define LK_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kBlock = 32;         // MXFP4 block: 32 elements, 16 bytes + 1 scale byte
constexpr int kGroup = 4;          // blocks handled per 512-bit step
constexpr int kGroupElems = kBlock * kGroup;  // 128

const float kFp4[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

inline float bf16_to_f32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {  // round to nearest even, NaN kept quiet (same as torch)
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;
  return static_cast<uint16_t>(bits >> 16);
}

inline float e8m0(uint8_t s) {  // 2^(s-127); s == 0 gives 2^-127 (denormal)
  return std::ldexp(1.0f, static_cast<int>(s) - 127);
}

// Element i of a vector of length n (multiple of 32) -> position in the "lane" layout used by the
// AVX-512 path. A 64-byte load covers 4 blocks (one per 128-bit lane); its 16-bit word 8k+j holds the
// four nibbles of elements 4j..4j+3 of block k. Shifting the words by 0/4/8/12 bits and looking the low
// nibble up with vpermw gives 4 vectors ("runs") of 32 bf16: run r, word 8k+j = element 4j+r of block k.
// So per group of 4 blocks (128 elements) the layout is: position 32*r + 8*k + j.
inline int64_t lane_pos(int64_t i) {
  const int64_t g = i / kBlock, e = i % kBlock;
  const int64_t q = g / kGroup, k = g % kGroup;
  return q * kGroupElems + (e % 4) * 32 + 8 * k + e / 4;
}

// Element i of a vector of length n (multiple of 32) -> position in the NEON path's layout: per block,
// the 16 even elements (low nibbles), then the 16 odd ones (high nibbles).
inline int64_t neon_pos(int64_t i) {
  const int64_t e = i % kBlock;
  return i - e + (e & 1) * 16 + e / 2;
}

inline float swiglu(float g, float l, float limit) {
  g = std::min(g, limit);
  l = std::min(std::max(l, -limit), limit);
  float glu = g * (1.0f / (1.0f + std::exp(-1.702f * g)));
  return glu * (l + 1.0f);
}

// ------------------------------------------------------------------------------------------------
// Work-sharing pool. Unlike an OpenMP region it never waits for a thread to *arrive*: the caller
// claims work units itself, helpers join when they wake, and the call returns as soon as every unit is
// done. On a busy machine (more runnable threads than cores) an OpenMP barrier can wait a whole
// scheduler time slice for a preempted helper, many times per token.
class Pool {
 public:
  // Helpers spin this long (LANTERN_SPIN_US, default 100) after a job before sleeping.
  static int spin_micros() {
    static const int v = [] {
      const char* e = std::getenv("LANTERN_SPIN_US");
      return e ? std::max(0, std::atoi(e)) : 100;
    }();
    return v;
  }
  using Fn = void (*)(void*, int64_t);

  explicit Pool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
  }
  int size() const { return static_cast<int>(threads_.size()) + 1; }

  void run(int64_t total, Fn f, void* c) {
    if (total <= 0) return;
    std::lock_guard<std::mutex> one_job(run_mu_);
    if (threads_.empty() || total == 1) {
      for (int64_t i = 0; i < total; ++i) f(c, i);
      return;
    }
    done_.store(0, std::memory_order_relaxed);
    fn_.store(f, std::memory_order_relaxed);
    ctx_.store(c, std::memory_order_relaxed);
    ++gen_;
    state_.store(((gen_ & 0xffffu) << 48) | (static_cast<uint64_t>(total) << 24), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mu_);
      published_.store(gen_, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen_);
    for (int spins = 0; done_.load(std::memory_order_acquire) < total; ++spins) {
      if (spins < 20000) pause();
      else std::this_thread::yield();
    }
  }

 private:
  static void pause() {
#if LK_X86
    _mm_pause();
#endif
  }

  void work(uint64_t gen) {
    const uint64_t tag = gen & 0xffffu;
    for (;;) {
      uint64_t v = state_.load(std::memory_order_acquire);
      if ((v >> 48) != tag) return;
      const uint64_t total = (v >> 24) & 0xffffffu, i = v & 0xffffffu;
      if (i >= total) return;
      Fn f = fn_.load(std::memory_order_relaxed);
      void* c = ctx_.load(std::memory_order_relaxed);
      if (!state_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
      f(c, static_cast<int64_t>(i));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop() {
    uint64_t seen = published_.load(std::memory_order_acquire);
    for (;;) {
      // Spin a while before sleeping: during generation the next job comes within a fraction of a
      // millisecond (the torch ops between kernel calls), and a futex wake-up costs tens of microseconds.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_micros());
      for (int spins = 0; published_.load(std::memory_order_acquire) == seen; ++spins) {
        if ((spins & 63) != 0 || std::chrono::steady_clock::now() < spin_until) {
          pause();
        } else {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return published_.load(std::memory_order_acquire) != seen; });
        }
      }
      seen = published_.load(std::memory_order_acquire);
      work(seen);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> state_{0};  // generation tag (16 bits) | total (24) | next (24)
  std::atomic<Fn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> done_{0};
  uint64_t gen_ = 0;
};

Pool& get_pool(int nthreads) {
  // Pools are never destroyed (helpers sleep on a condition variable; exit ends them).
  static std::mutex mu;
  static std::vector<Pool*> pools(65, nullptr);
  nthreads = std::max(1, std::min(nthreads, 64));
  std::lock_guard<std::mutex> lk(mu);
  if (!pools[nthreads]) pools[nthreads] = new Pool(nthreads - 1);
  return *pools[nthreads];
}

template <class F>
void parallel_for(int nthreads, int64_t n, F&& f) {
  using Fd = std::remove_reference_t<F>;
  get_pool(nthreads).run(n, [](void* c, int64_t i) { (*static_cast<Fd*>(c))(i); }, static_cast<void*>(&f));
}

// ------------------------------------------------------------------------------------------------
// Scalar path: natural element order.
// dot of one packed row (G blocks) with n x-vectors -> out[t]
void rows_scalar(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b,
                 int64_t row_stride_s, int64_t nrows, const uint16_t* const* xs, int nt, float* out,
                 int64_t out_stride) {
  std::vector<float> xf(static_cast<size_t>(G * kBlock));
  for (int t = 0; t < nt; ++t) {
    for (int64_t i = 0; i < G * kBlock; ++i) xf[i] = bf16_to_f32(xs[t][i]);
    for (int64_t r = 0; r < nrows; ++r) {
      const uint8_t* b = blocks + r * row_stride_b;
      const uint8_t* s = scales + r * row_stride_s;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        float part = 0.0f;
        const float* xg = xf.data() + g * kBlock;
        for (int j = 0; j < 16; ++j) {
          uint8_t v = b[g * 16 + j];
          part += kFp4[v & 0x0f] * xg[2 * j];
          part += kFp4[v >> 4] * xg[2 * j + 1];
        }
        acc += part * e8m0(s[g]);
      }
      out[r * out_stride + t] = acc;
    }
  }
}

#if LK_X86
// ------------------------------------------------------------------------------------------------
// AVX-512 BF16 path.
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

// nrows weight rows against T x-rows; out[r*os + t].
LK_TARGET void dense_rows_avx512(const uint16_t* w, int64_t nrows, const uint16_t* x, int64_t T, int64_t D,
                                 float* out, int64_t os) {
  int64_t r = 0;
  if (T == 1) {
    for (; r + 4 <= nrows; r += 4) dense_tile<4, 1>(w + r * D, D, x, D, D, out + r * os, os);
    for (; r < nrows; ++r) dense_tile<1, 1>(w + r * D, D, x, D, D, out + r * os, os);
    return;
  }
  constexpr int64_t kTokBlock = 16;  // x block stays in L1/L2 while the row chunk streams past it
  for (int64_t t0 = 0; t0 < T; t0 += kTokBlock) {
    const int64_t t1 = std::min(T, t0 + kTokBlock);
    for (r = 0; r + 4 <= nrows; r += 4) {
      int64_t t = t0;
      for (; t + 4 <= t1; t += 4) dense_tile<4, 4>(w + r * D, D, x + t * D, D, D, out + r * os + t, os);
      for (; t < t1; ++t) dense_tile<4, 1>(w + r * D, D, x + t * D, D, D, out + r * os + t, os);
    }
  }
  for (; r < nrows; ++r)
    for (int64_t t = 0; t < T; ++t) dense_tile<1, 1>(w + r * D, D, x + t * D, D, D, out + r * os + t, os);
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

#include "avx2.h"
#endif  // LK_X86

#if LK_NEON
#include "neon.h"
#endif

enum Path { kAuto = 0, kScalar = 1, kAvx512 = 2, kAvx2 = 3, kNeon = 4 };

// Paths the library acts as if this CPU could not run (lk_hide_paths; bit 1 << path). Tests use it to
// stand in for an older CPU on a newer one.
std::atomic<unsigned> g_hidden{0};

// The path to run for `requested` (kAuto: the best this CPU can run), or -1 if the CPU cannot run it.
int resolve_path(int requested) {
  const unsigned hidden = g_hidden.load(std::memory_order_relaxed);
  auto shown = [&](int p) { return ((hidden >> p) & 1u) == 0; };
#if LK_X86
  static const bool has512_cpu = cpu_has_avx512bf16();
  static const bool has2_cpu = cpu_has_avx2_fma();
  const bool has512 = has512_cpu && shown(kAvx512), has2 = has2_cpu && shown(kAvx2);
  if (requested == kAuto) return has512 ? kAvx512 : has2 ? kAvx2 : kScalar;
  if (requested == kAvx512 && !has512) return -1;
  if (requested == kAvx2 && !has2) return -1;
  if (requested < kAuto || requested > kAvx2) return -1;  // kNeon and anything unknown
  return requested;
#elif LK_NEON
  if (requested == kAuto) return shown(kNeon) ? kNeon : kScalar;
  if (requested == kScalar || (requested == kNeon && shown(kNeon))) return requested;
  return -1;
#else
  (void)shown;
  if (requested != kAuto && requested != kScalar) return -1;
  return kScalar;
#endif
}

using RowsFn = void (*)(const uint8_t*, const uint8_t*, int64_t, int64_t, int64_t, int64_t,
                        const uint16_t* const*, int, float*, int64_t);

void dense_rows_scalar(const uint16_t* w, int64_t nrows, const uint16_t* x, int64_t T, int64_t D, float* out,
                       int64_t os) {
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t t = 0; t < T; ++t) {
      float acc = 0.0f;
      for (int64_t i = 0; i < D; ++i) acc += bf16_to_f32(w[r * D + i]) * bf16_to_f32(x[t * D + i]);
      out[r * os + t] = acc;
    }
}

}  // namespace

// y[T, N] = x[T, D] @ w[N, D]^T (+ bias[N]); products of bf16 values summed in fp32, bias added in fp32,
// then stored as fp32 (out_bf16 == 0) or rounded once to bf16 (out_bf16 != 0).
// Several weight matrices stacked by rows without copying them (the HF layout's q/k/v_proj): segment i has
// ns[i] rows at ws[i] (bias bs[i] or null); out [T, sum ns] as if the matrices were one. One parallel region.
LK_API int lk_linear_bf16_multi(const uint16_t* x, const uint16_t* const* ws, const uint16_t* const* bs,
                                const int64_t* ns, int nseg, void* out, int64_t T, int64_t D, int out_bf16, int path,
                                int nthreads) {
  path = resolve_path(path);
  if (path < 0) return -2;
  if (nseg < 1) return -1;
  int64_t N = 0;
  for (int i = 0; i < nseg; ++i) {
    if (ns[i] < 0) return -1;
    N += ns[i];
  }
  if (T <= 0 || N <= 0) return 0;
  if (nthreads < 1) nthreads = 1;
  constexpr int64_t kRows = 64;
  struct Chunk { int seg; int64_t r0, n, col; };  // rows r0..r0+n of segment seg -> output column col
  std::vector<Chunk> chunks;
  for (int i = 0, col = 0; i < nseg; col += static_cast<int>(ns[i]), ++i)
    for (int64_t r0 = 0; r0 < ns[i]; r0 += kRows) chunks.push_back({i, r0, std::min(kRows, ns[i] - r0), col + r0});
  std::vector<float> xf;  // AVX2 / NEON: x widened to fp32 once for every chunk (AVX2: its even/odd layout)
#if LK_X86
  if (path == kAvx2) {
    xf.resize(static_cast<size_t>(T * dense_pad(D)));
    dense_x_avx2(x, T, D, xf.data());
  }
#endif
#if LK_NEON
  if (path == kNeon) {
    xf.resize(static_cast<size_t>(T * D));
    neon_widen(x, T * D, xf.data());
  }
#endif
  parallel_for(nthreads, static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    thread_local std::vector<float> tmp;
    tmp.resize(static_cast<size_t>(kRows * T));
    const Chunk ch = chunks[c];
    const uint16_t* w = ws[ch.seg] + ch.r0 * D;
    const uint16_t* bias = bs[ch.seg] ? bs[ch.seg] + ch.r0 : nullptr;
    const int64_t n = ch.n;
#if LK_X86
    if (path == kAvx512)
      dense_rows_avx512(w, n, x, T, D, tmp.data(), T);
    else if (path == kAvx2)
      dense_rows_avx2(w, n, xf.data(), T, D, tmp.data(), T);
    else
#endif
#if LK_NEON
    if (path == kNeon)
      dense_rows_neon(w, n, xf, T, D, tmp.data(), T);
    else
#endif
      dense_rows_scalar(w, n, x, T, D, tmp.data(), T);
    for (int64_t r = 0; r < n; ++r) {
      const float b = bias ? bf16_to_f32(bias[r]) : 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        const float v = tmp[r * T + t] + b;
        if (out_bf16)
          static_cast<uint16_t*>(out)[t * N + ch.col + r] = f32_to_bf16(v);
        else
          static_cast<float*>(out)[t * N + ch.col + r] = v;
      }
    }
  });
  return 0;
}

LK_API int lk_linear_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* bias, void* out, int64_t T,
                          int64_t D, int64_t N, int out_bf16, int path, int nthreads) {
  return lk_linear_bf16_multi(x, &w, &bias, &N, 1, out, T, D, out_bf16, path, nthreads);
}

// Decode attention (one query, every key visible): q [Hkv, G, d] bf16, k/v [S, Hkv, d] bf16 (contiguous),
// sinks [Hkv*G] f32 -> out [Hkv*G*d] bf16. Returns -2 when `path` resolves to one without an attention
// kernel (scalar) or the CPU cannot run it (caller uses torch), -1 on unsupported shapes (d a multiple of 16
// up to 64, G up to 16).
LK_API int lk_attn_decode(const uint16_t* q, const uint16_t* k, const uint16_t* v, const float* sinks, uint16_t* out,
                          int64_t S, int64_t Hkv, int64_t G, int64_t d, float scale, int path, int nthreads) {
#if LK_X86
  path = resolve_path(path);
  if (path != kAvx512 && path != kAvx2) return -2;
  if (d % 16 != 0 || d > 64 || G > 16 || G < 1 || S < 1) return -1;
  parallel_for(nthreads, Hkv, [&](int64_t h) {
    if (path == kAvx512)
      attn_head_avx512(q + h * G * d, k + h * d, v + h * d, Hkv * d, S, static_cast<int>(G), static_cast<int>(d),
                       sinks + h * G, scale, out + h * G * d);
    else
      attn_head_avx2(q + h * G * d, k + h * d, v + h * d, Hkv * d, S, static_cast<int>(G), static_cast<int>(d),
                     sinks + h * G, scale, out + h * G * d);
  });
  return 0;
#elif LK_NEON
  if (resolve_path(path) != kNeon) return -2;
  if (d % 16 != 0 || d > 64 || G > 16 || G < 1 || S < 1) return -1;
  parallel_for(nthreads, Hkv, [&](int64_t h) {
    attn_head_neon(q + h * G * d, k + h * d, v + h * d, Hkv * d, S, static_cast<int>(G), static_cast<int>(d),
                   sinks + h * G, scale, out + h * G * d);
  });
  return 0;
#else
  return -2;
#endif
}

// RMSNorm: out[t] = bf16((x * (1/sqrt(mean(x^2) + eps))) * scale), statistics in fp32 (x bf16 [T, D],
// scale f32 [D]); the same two products as engine.model.rms_norm, only the sum of squares' order differs.
LK_API int lk_rms_norm(const uint16_t* x, const float* scale, float eps, uint16_t* out, int64_t T, int64_t D,
                       int nthreads) {
  if (T <= 0 || D <= 0) return 0;
  parallel_for(T >= 16 ? nthreads : 1, T, [&](int64_t t) {
    const uint16_t* row = x + t * D;
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= D; i += 16)
      for (int j = 0; j < 16; ++j) {
        const float v = bf16_to_f32(row[i + j]);
        acc[j] += v * v;
      }
    for (; i < D; ++i) {
      const float v = bf16_to_f32(row[i]);
      acc[0] += v * v;
    }
    float ss = 0.0f;
    for (int j = 0; j < 16; ++j) ss += acc[j];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
    uint16_t* o = out + t * D;
    for (int64_t k = 0; k < D; ++k) o[k] = f32_to_bf16((bf16_to_f32(row[k]) * r) * scale[k]);
  });
  return 0;
}

// Streaming read of n bytes split over nthreads; returns a checksum so the reads stay.
LK_API double lk_read_bytes(const uint8_t* p, int64_t n, int nthreads) {
  constexpr int64_t kLinesPerUnit = 4096;  // 256 KiB per work unit
  const int64_t lines = n / 64;
  const int64_t units = (lines + kLinesPerUnit - 1) / kLinesPerUnit;
  std::vector<uint64_t> sums(static_cast<size_t>(units), 0);
  parallel_for(nthreads, units, [&](int64_t u) {
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
    const int64_t end = std::min(lines, (u + 1) * kLinesPerUnit);
    for (int64_t l = u * kLinesPerUnit; l < end; ++l)
      for (int j = 0; j < 8; ++j) acc[j] += q[l * 8 + j];
    uint64_t a = 0;
    for (int j = 0; j < 8; ++j) a += acc[j];
    sums[u] = a;
  });
  double total = 0.0;
  for (uint64_t v : sums) total += static_cast<double>(v & 0xffff);
  return total;
}

LK_API int lk_abi_version() { return 9; }

// Testing: act as if this CPU could not run the paths in `mask` (bit 1 << path; the scalar path cannot be
// hidden); 0 restores what the CPU detection found. Returns the mask now in effect.
LK_API unsigned lk_hide_paths(unsigned mask) {
  mask &= ~((1u << kAuto) | (1u << kScalar));
  g_hidden.store(mask, std::memory_order_relaxed);
  return mask;
}

// The best path this CPU runs: 1 = scalar, 2 = AVX-512 BF16, 3 = AVX2 + FMA, 4 = NEON (AArch64).
LK_API int lk_best_path() { return resolve_path(kAuto); }

// 1 if this CPU (and OS) can run `path` (a Path value), else 0.
LK_API int lk_path_available(int path) { return resolve_path(path) >= 0 ? 1 : 0; }


// Returns 0 on success, negative on bad arguments / unavailable path.
LK_API int lk_moe_experts(const uint16_t* h, const int64_t* expert_idx, const float* expert_w,
                          const uint8_t* b1, const uint8_t* s1, const uint16_t* bias1, const uint8_t* b2,
                          const uint8_t* s2, const uint16_t* bias2, uint16_t* out, int64_t T, int64_t K,
                          int64_t E, int64_t D, int64_t I, float limit, int path, int nthreads) {
  path = resolve_path(path);
  if (path < 0) return -2;
  if (D % kBlock != 0 || I % kBlock != 0 || T < 0 || K <= 0) return -1;
  if (nthreads < 1) nthreads = 1;
  const bool lanes = path == kAvx512;
  const bool pairs = path == kAvx2;  // avx2.h's pair layout
  const bool neon = path == kNeon;   // NEON layout: per block, even elements then odd ones (neon_pos)
  const RowsFn rows_fn =
#if LK_X86
      lanes ? rows_avx512 : pairs ? rows_avx2 :
#endif
#if LK_NEON
      neon ? rows_neon :
#endif
            rows_scalar;
  // Element i of an activation vector -> its position in the path's input layout.
  auto pos_of = [&](int64_t i) -> int64_t {
#if LK_X86
    if (pairs) return avx2_pos(i);
#endif
    return lanes ? lane_pos(i) : neon ? neon_pos(i) : i;
  };

  const int64_t G1 = D / kBlock, G2 = I / kBlock;
  const int64_t N1 = 2 * I;  // mlp1 rows
  auto xlen_of = [&](int64_t G) -> int64_t {
#if LK_X86
    if (pairs) return avx2_xlen(G);
#endif
    return lanes ? ((G + kGroup - 1) / kGroup) * kGroupElems : G * kBlock;
  };
  const int64_t xlen1 = xlen_of(G1), xlen2 = xlen_of(G2);
  const int64_t P = T * K;  // (token, slot) pairs

  // Validate expert ids; group pairs by expert.
  std::vector<std::vector<int64_t>> pairs_of(static_cast<size_t>(E));
  for (int64_t p = 0; p < P; ++p) {
    int64_t e = expert_idx[p];
    if (e < 0 || e >= E) return -3;
    pairs_of[e].push_back(p);
  }
  std::vector<int64_t> used;
  for (int64_t e = 0; e < E; ++e)
    if (!pairs_of[e].empty()) used.push_back(e);

  // Inputs in the kernel's layout.
  std::vector<uint16_t> xh(static_cast<size_t>(T * xlen1), 0);
  std::vector<uint16_t> xa(static_cast<size_t>(P * xlen2), 0);
  std::vector<float> y(static_cast<size_t>(P * D));

  constexpr int64_t kChunk = 128;  // rows per work unit (even: gate/up pairs stay together)
  struct Unit { int64_t e, r0, n; };
  auto make_units = [&](int64_t nrows) {
    std::vector<Unit> units;
    for (int64_t e : used)
      for (int64_t r0 = 0; r0 < nrows; r0 += kChunk) units.push_back({e, r0, std::min(kChunk, nrows - r0)});
    return units;
  };
  const std::vector<Unit> units1 = make_units(N1), units2 = make_units(D);

  const int64_t tblocks = (T + 15) / 16;
  parallel_for(nthreads, tblocks, [&](int64_t tb) {
    for (int64_t t = tb * 16; t < std::min(T, tb * 16 + 16); ++t) {
      uint16_t* dst = xh.data() + t * xlen1;
      const uint16_t* src = h + t * D;
      if (lanes || pairs || neon)
        for (int64_t i = 0; i < D; ++i) dst[pos_of(i)] = src[i];
      else
        std::memcpy(dst, src, D * sizeof(uint16_t));
    }
  });

  // ---- mlp1 + swiglu -> xa (bf16, kernel layout) ----
  parallel_for(nthreads, static_cast<int64_t>(units1.size()), [&](int64_t ui) {
    thread_local std::vector<const uint16_t*> xs;
    thread_local std::vector<float> u;
    const Unit un = units1[ui];
    const std::vector<int64_t>& ps = pairs_of[un.e];
    const int nt = static_cast<int>(ps.size());
    xs.resize(nt);
    for (int i = 0; i < nt; ++i) xs[i] = xh.data() + (ps[i] / K) * xlen1;
    u.resize(static_cast<size_t>(un.n * nt));
    rows_fn(b1 + (un.e * N1 + un.r0) * G1 * 16, s1 + (un.e * N1 + un.r0) * G1, G1, G1 * 16, G1, un.n, xs.data(),
            nt, u.data(), nt);
    const uint16_t* bias = bias1 + un.e * N1 + un.r0;
    for (int64_t r = 0; r + 1 < un.n; r += 2) {
      const float bg = bf16_to_f32(bias[r]), bl = bf16_to_f32(bias[r + 1]);
      const int64_t i = (un.r0 + r) / 2;
      const int64_t pos = pos_of(i);
      for (int k = 0; k < nt; ++k) {
        const float a = swiglu(u[r * nt + k] + bg, u[(r + 1) * nt + k] + bl, limit);
        xa[ps[k] * xlen2 + pos] = f32_to_bf16(a);
      }
    }
  });

  // ---- mlp2 -> y (fp32, bias included) ----
  parallel_for(nthreads, static_cast<int64_t>(units2.size()), [&](int64_t ui) {
    thread_local std::vector<const uint16_t*> xs;
    thread_local std::vector<float> u;
    const Unit un = units2[ui];
    const std::vector<int64_t>& ps = pairs_of[un.e];
    const int nt = static_cast<int>(ps.size());
    xs.resize(nt);
    for (int i = 0; i < nt; ++i) xs[i] = xa.data() + ps[i] * xlen2;
    u.resize(static_cast<size_t>(un.n * nt));
    rows_fn(b2 + (un.e * D + un.r0) * G2 * 16, s2 + (un.e * D + un.r0) * G2, G2, G2 * 16, G2, un.n, xs.data(), nt,
            u.data(), nt);
    const uint16_t* bias = bias2 + un.e * D + un.r0;
    for (int64_t r = 0; r < un.n; ++r) {
      const float b = bf16_to_f32(bias[r]);
      for (int k = 0; k < nt; ++k) y[ps[k] * D + un.r0 + r] = u[r * nt + k] + b;
    }
  });

  // ---- weighted sum over the K slots, one bf16 rounding ----
  parallel_for(nthreads, tblocks, [&](int64_t tb) {
    for (int64_t t = tb * 16; t < std::min(T, tb * 16 + 16); ++t) {
      for (int64_t d = 0; d < D; ++d) {
        float s = 0.0f;
        for (int64_t k = 0; k < K; ++k) s += expert_w[t * K + k] * y[(t * K + k) * D + d];
        out[t * D + d] = f32_to_bf16(s);
      }
    }
  });
  return 0;
}

#ifdef LK_PYTHON_MODULE
// setup.py builds this file as a (function-less) Python extension so that pip places it in the package;
// the engine loads the same file with ctypes. Importing it must still work (pkgutil walks the package).
#include <Python.h>
static struct PyModuleDef lk_module = {PyModuleDef_HEAD_INIT, "_lantern_kernels",
                                       "Lantern native CPU kernels (used through ctypes).", -1, nullptr};
PyMODINIT_FUNC PyInit__lantern_kernels(void) { return PyModule_Create(&lk_module); }
#endif
