// Lantern CPU kernels: the C interface (lantern_kernels.h). Validates arguments, picks the path, splits
// the work over a small thread pool and calls the kernels of the path's Isa table (scalar.cpp, avx512.cpp,
// avx2.cpp, neon.cpp). The numbers are those stated in lantern_kernels.h; only the fp32 summation order
// differs between paths.
//
// Built by setup.py as a (function-less) Python extension so that pip places it in the package, or as a
// plain shared library (the Windows DLL, the native harness); the engine loads it with ctypes either way.
#define LK_BUILDING 1  // this file defines the exported functions (dllexport on Windows)
#ifdef LK_PYTHON_MODULE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include "common.h"

#if LK_X86
#include <immintrin.h>  // _mm_pause
#endif

namespace lk {
namespace {

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

// ---- paths --------------------------------------------------------------------------------------------------
const Isa* isa_of(int path) {
  switch (path) {
    case LK_PATH_SCALAR: return isa_scalar();
    case LK_PATH_AVX512: return isa_avx512();
    case LK_PATH_AVX2: return isa_avx2();
    case LK_PATH_NEON: return isa_neon();
    default: return nullptr;
  }
}

constexpr int kPathCount = 5;

// What detection found: bit 1 << path for each path this CPU and OS can run (checked once).
unsigned detected_paths() {
  static const unsigned mask = [] {
    unsigned m = 0;
    for (int p = LK_PATH_SCALAR; p < kPathCount; ++p) {
      const Isa* isa = isa_of(p);
      if (isa != nullptr && isa->cpu_supports()) m |= 1u << p;
    }
    return m;
  }();
  return mask;
}

// Paths the library acts as if this CPU could not run (lk_hide_paths).
std::atomic<unsigned> g_hidden{0};

unsigned runnable_paths() { return detected_paths() & ~g_hidden.load(std::memory_order_relaxed); }

// Widest first: the path LK_PATH_AUTO runs is the first of these this CPU runs.
constexpr int kPreference[] = {LK_PATH_AVX512, LK_PATH_NEON, LK_PATH_AVX2, LK_PATH_SCALAR};

// The kernels to run for `requested` (LK_PATH_AUTO: the best this CPU runs), or nullptr.
const Isa* resolve(int requested) {
  const unsigned ok = runnable_paths();
  if (requested == LK_PATH_AUTO) {
    for (int p : kPreference)
      if (ok & (1u << p)) return isa_of(p);
    return isa_scalar();
  }
  if (requested < 0 || requested >= kPathCount || !(ok & (1u << requested))) return nullptr;
  return isa_of(requested);
}

// Positions of the n elements of an activation vector in a path's layout (cached: a few shapes per model).
const std::vector<int64_t>& layout_of(const Isa* isa, int64_t n) {
  static std::mutex mu;
  static std::vector<std::pair<std::pair<const Isa*, int64_t>, std::vector<int64_t>*>> cache;
  std::lock_guard<std::mutex> lk(mu);
  for (const auto& e : cache)
    if (e.first.first == isa && e.first.second == n) return *e.second;
  auto* pos = new std::vector<int64_t>(static_cast<size_t>(n));  // kept for the process's lifetime
  for (int64_t i = 0; i < n; ++i) (*pos)[i] = isa->x_pos(i);
  cache.push_back({{isa, n}, pos});
  return *pos;
}

inline float swiglu(float g, float l, float limit) {
  g = std::min(g, limit);
  l = std::min(std::max(l, -limit), limit);
  const float glu = g * (1.0f / (1.0f + std::exp(-1.702f * g)));
  return glu * (l + 1.0f);
}

}  // namespace
}  // namespace lk

using namespace lk;

extern "C" {

LK_API int lk_abi_version(void) { return LK_ABI_VERSION; }

LK_API lk_path lk_best_path(void) { return resolve(LK_PATH_AUTO)->path; }

LK_API int lk_path_available(lk_path path) { return resolve(path) != nullptr ? 1 : 0; }

LK_API unsigned lk_hide_paths(unsigned mask) {
  mask &= ~((1u << LK_PATH_AUTO) | (1u << LK_PATH_SCALAR));
  g_hidden.store(mask, std::memory_order_relaxed);
  return mask;
}

LK_API lk_status lk_linear_bf16_multi(const uint16_t* x, const uint16_t* const* ws, const uint16_t* const* bs,
                                      const int64_t* ns, int nseg, void* out, int64_t T, int64_t D, int out_bf16,
                                      lk_path path, int nthreads) {
  const Isa* isa = resolve(path);
  if (isa == nullptr) return LK_ERR_PATH;
  if (nseg < 1 || T < 0 || D < 0) return LK_ERR_ARGUMENT;
  int64_t N = 0;
  for (int i = 0; i < nseg; ++i) {
    if (ns[i] < 0) return LK_ERR_ARGUMENT;
    N += ns[i];
  }
  if (T == 0 || N == 0) return LK_OK;
  constexpr int64_t kRows = 64;
  struct Chunk { int seg; int64_t r0, n, col; };  // rows r0..r0+n of segment seg -> output column col
  std::vector<Chunk> chunks;
  for (int64_t i = 0, col = 0; i < nseg; col += ns[i], ++i)
    for (int64_t r0 = 0; r0 < ns[i]; r0 += kRows)
      chunks.push_back({static_cast<int>(i), r0, std::min(kRows, ns[i] - r0), col + r0});
  std::vector<float> buf;  // x in the form the path reads, prepared once for every chunk
  const void* xp = isa->dense_prepare(x, T, D, buf);
  parallel_for(nthreads, static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    thread_local std::vector<float> tmp;
    tmp.resize(static_cast<size_t>(kRows * T));
    const Chunk ch = chunks[c];
    const uint16_t* bias = bs[ch.seg] ? bs[ch.seg] + ch.r0 : nullptr;
    const int64_t n = ch.n;
    isa->dense_rows(ws[ch.seg] + ch.r0 * D, n, xp, T, D, tmp.data(), T);
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
  return LK_OK;
}

LK_API lk_status lk_linear_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* bias, void* out, int64_t T,
                                int64_t D, int64_t N, int out_bf16, lk_path path, int nthreads) {
  return lk_linear_bf16_multi(x, &w, &bias, &N, 1, out, T, D, out_bf16, path, nthreads);
}

LK_API lk_status lk_attn_decode(const uint16_t* q, const uint16_t* k, const uint16_t* v, const float* sinks,
                                uint16_t* out, int64_t S, int64_t Hkv, int64_t G, int64_t d, float scale, lk_path path,
                                int nthreads) {
  const Isa* isa = resolve(path);
  if (isa == nullptr) return LK_ERR_PATH;
  if (S < 1 || G < 1 || Hkv < 1 || d < 1) return LK_ERR_ARGUMENT;
  if (isa->attn_head == nullptr || d % 16 != 0 || d > 64 || G > 16) return LK_UNSUPPORTED;
  parallel_for(nthreads, Hkv, [&](int64_t h) {
    isa->attn_head(q + h * G * d, k + h * d, v + h * d, Hkv * d, S, static_cast<int>(G), static_cast<int>(d),
                   sinks + h * G, scale, out + h * G * d);
  });
  return LK_OK;
}

LK_API lk_status lk_rms_norm(const uint16_t* x, const float* scale, float eps, uint16_t* out, int64_t T, int64_t D,
                             int nthreads) {
  if (T < 0 || D < 0) return LK_ERR_ARGUMENT;
  if (T == 0 || D == 0) return LK_OK;
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
  return LK_OK;
}

LK_API lk_status lk_read_bytes(const uint8_t* p, int64_t n, int nthreads, double* checksum) {
  if (n < 0) return LK_ERR_ARGUMENT;
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
  for (uint64_t s : sums) total += static_cast<double>(s & 0xffff);
  if (checksum != nullptr) *checksum = total;
  return LK_OK;
}

LK_API lk_status lk_mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, const uint16_t* x, float* out,
                               int64_t T, int64_t D, int64_t N, lk_path path, int nthreads) {
  const Isa* isa = resolve(path);
  if (isa == nullptr) return LK_ERR_PATH;
  if (D % kBlock != 0 || T < 0 || N < 0) return LK_ERR_ARGUMENT;
  if (T == 0 || N == 0) return LK_OK;
  const int64_t G = D / kBlock, xlen = isa->x_len(G);
  const std::vector<int64_t>& pos = layout_of(isa, D);
  std::vector<uint16_t> xl(static_cast<size_t>(T * xlen), 0);
  std::vector<const uint16_t*> xs(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < D; ++i) xl[t * xlen + pos[i]] = x[t * D + i];
    xs[t] = xl.data() + t * xlen;
  }
  constexpr int64_t kRows = 64;
  parallel_for(nthreads, (N + kRows - 1) / kRows, [&](int64_t c) {
    thread_local std::vector<float> tmp;
    const int64_t r0 = c * kRows, n = std::min(kRows, N - r0);
    tmp.resize(static_cast<size_t>(n * T));
    isa->rows(blocks + r0 * G * 16, scales + r0 * G, G, G * 16, G, n, xs.data(), static_cast<int>(T), tmp.data(), T);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t t = 0; t < T; ++t) out[t * N + r0 + r] = tmp[r * T + t];
  });
  return LK_OK;
}

LK_API lk_status lk_moe_experts(const uint16_t* h, const int64_t* expert_idx, const float* expert_w,
                                const uint8_t* b1, const uint8_t* s1, const uint16_t* bias1, const uint8_t* b2,
                                const uint8_t* s2, const uint16_t* bias2, uint16_t* out, int64_t T, int64_t K,
                                int64_t E, int64_t D, int64_t I, float limit, lk_path path, int nthreads) {
  const Isa* isa = resolve(path);
  if (isa == nullptr) return LK_ERR_PATH;
  if (D % kBlock != 0 || I % kBlock != 0 || T < 0 || K <= 0 || E <= 0) return LK_ERR_ARGUMENT;
  const int64_t G1 = D / kBlock, G2 = I / kBlock;
  const int64_t N1 = 2 * I;  // mlp1 rows
  const int64_t xlen1 = isa->x_len(G1), xlen2 = isa->x_len(G2);
  const int64_t P = T * K;  // (token, slot) pairs

  // Validate expert ids; group pairs by expert.
  std::vector<std::vector<int64_t>> pairs_of(static_cast<size_t>(E));
  for (int64_t p = 0; p < P; ++p) {
    const int64_t e = expert_idx[p];
    if (e < 0 || e >= E) return LK_ERR_EXPERT;
    pairs_of[e].push_back(p);
  }
  if (T == 0) return LK_OK;
  std::vector<int64_t> used;
  for (int64_t e = 0; e < E; ++e)
    if (!pairs_of[e].empty()) used.push_back(e);

  const std::vector<int64_t>& pos1 = layout_of(isa, D);  // activation layouts of mlp1's and mlp2's inputs
  const std::vector<int64_t>& pos2 = layout_of(isa, I);
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
      for (int64_t i = 0; i < D; ++i) dst[pos1[i]] = src[i];
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
    isa->rows(b1 + (un.e * N1 + un.r0) * G1 * 16, s1 + (un.e * N1 + un.r0) * G1, G1, G1 * 16, G1, un.n, xs.data(),
              nt, u.data(), nt);
    const uint16_t* bias = bias1 + un.e * N1 + un.r0;
    for (int64_t r = 0; r + 1 < un.n; r += 2) {
      const float bg = bf16_to_f32(bias[r]), bl = bf16_to_f32(bias[r + 1]);
      const int64_t p = pos2[(un.r0 + r) / 2];
      for (int k = 0; k < nt; ++k) {
        const float a = swiglu(u[r * nt + k] + bg, u[(r + 1) * nt + k] + bl, limit);
        xa[ps[k] * xlen2 + p] = f32_to_bf16(a);
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
    isa->rows(b2 + (un.e * D + un.r0) * G2 * 16, s2 + (un.e * D + un.r0) * G2, G2, G2 * 16, G2, un.n, xs.data(), nt,
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
  return LK_OK;
}

LK_API lk_status lk_fma_peak(lk_path path, int nthreads, int64_t iterations, double* flops_per_s) {
  const Isa* isa = resolve(path);
  if (isa == nullptr) return LK_ERR_PATH;
  if (iterations < 1 || flops_per_s == nullptr) return LK_ERR_ARGUMENT;
  nthreads = std::max(1, std::min(nthreads, 64));
  const int64_t units = 4 * static_cast<int64_t>(nthreads);  // small units: a late helper costs little
  std::vector<double> flops(static_cast<size_t>(units), 0.0);
  const auto t0 = std::chrono::steady_clock::now();
  parallel_for(nthreads, units, [&](int64_t u) {
    flops[u] = isa->fma_probe(iterations);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0.0;
  for (double f : flops) total += f;
  *flops_per_s = seconds > 0.0 ? total / seconds : 0.0;
  return LK_OK;
}

}  // extern "C"

#ifdef LK_PYTHON_MODULE
// Importing the extension must work (pkgutil walks the package); its functions are reached through ctypes.
static struct PyModuleDef lk_module = {PyModuleDef_HEAD_INIT, "_lantern_kernels",
                                       "Lantern native CPU kernels (used through ctypes).", -1, nullptr};
PyMODINIT_FUNC PyInit__lantern_kernels(void) { return PyModule_Create(&lk_module); }
#endif
