// Native-kernel harness: the best path of the kernel library (NEON on AArch64, AVX-512 BF16 or AVX2 on x86
// where the CPU has it; or the one --path names) against the same library's scalar path.
//
// A client of the library like any other: it includes only the public header and links the library built
// with setup.py's sources and flags (engine/kernels/toolchain.py; tests/native/test_kernel_harness.py builds
// it for this machine, for AArch64 to run under qemu, and for Windows to run under Wine):
//   g++ <GNU_FLAGS> -pthread -fPIC -shared engine/kernels/*.cpp -o liblantern_kernels.so
//   g++ -O2 -std=c++17 -Iengine/kernels tests/native/kernel_harness.cpp -L. -llantern_kernels -o harness
// Usage: harness [--size small|full] [--perturb] [--seed N]
//   --perturb changes one activation of the fast path's input only (negative control: every case must FAIL).
//   --no-huge-scales leaves scales 253/254 out (the AVX-512 path scales per-lane partial sums, which can
//   overflow to +inf and -inf where the scalar block total does not); HARNESS_VERBOSE=1 prints mismatches.
// Criterion (the project's): bf16 outputs bit-identical for >= 97 % of the elements and within 1 bf16 ulp
// elsewhere (or |ref| * 2^-7 + max|ref| * 2^-12, the cancellation floor of tests/engine/test_moe_kernel.py); fp32 outputs within 1e-5 of the sum of |terms| (summation order only).
// lk_attn_decode has no scalar path in the library: it is compared against a plain fp32 loop here. The
// bf16 rounding, E2M1 values and e8m0 scales below are the harness's own (written from the format, not
// taken from the library).
// Prints one "CASE ..." line per case and "RESULT PASS|FAIL best_path=N"; exit status 0 only if all pass.

#include "lantern_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

bool g_perturb = false;

uint16_t to_bf16(float f) {  // round to nearest even (finite inputs only here)
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float from_bf16(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

const float kE2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

double scale_of(uint8_t s) { return std::ldexp(1.0, static_cast<int>(s) - 127); }

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  float normal(float sd = 1.0f) { return std::normal_distribution<float>(0.0f, sd)(gen); }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  std::vector<uint16_t> bf16(size_t n, float sd) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = to_bf16(normal(sd));
    return v;
  }
};

bool both_nan(uint16_t a, uint16_t b) { return (a & 0x7fff) > 0x7f80 && (b & 0x7fff) > 0x7f80; }

// Ordered integer of a bf16 pattern, so that neighbouring values differ by 1 across zero too.
int32_t ordered(uint16_t v) { return (v & 0x8000) ? -static_cast<int32_t>(v & 0x7fff) : static_cast<int32_t>(v); }

bool check_bf16(const std::string& name, const std::vector<uint16_t>& ref, const std::vector<uint16_t>& got) {
  int64_t same = 0, near = 0, bad = 0, special = 0;
  double max_rel = 0.0, max_abs = 0.0;
  for (uint16_t v : ref)
    if ((v & 0x7f80) != 0x7f80) max_abs = std::max(max_abs, std::fabs(static_cast<double>(from_bf16(v))));
  for (size_t i = 0; i < ref.size(); ++i) {
    special += (ref[i] & 0x7f80) == 0x7f80;  // inf / NaN in the reference
    if (ref[i] == got[i] || both_nan(ref[i], got[i])) {
      ++same;
      continue;
    }
    const double a = from_bf16(ref[i]), b = from_bf16(got[i]);
    const double rel = std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b));
    max_rel = std::max(max_rel, rel);
    // One bf16 step (2^-7 relative), plus tests/engine/test_moe_kernel.py's floor for cancellation
    // (max |ref| * 2^-12): the swiglu output is rounded to bf16 inside the MoE, and a one-step flip
    // there, times a large weight, moves an output near zero by more than one of its own steps.
    if (std::abs(ordered(ref[i]) - ordered(got[i])) <= 1 || std::fabs(a - b) <= std::fabs(a) / 128 + max_abs / 4096) {
      ++near;
    } else {
      if (bad < 3 && std::getenv("HARNESS_VERBOSE"))
        std::printf("  [%zu] ref=%04x (%g) got=%04x (%g)\n", i, ref[i], a, got[i], b);
      ++bad;
    }
  }
  const double frac = ref.empty() ? 1.0 : static_cast<double>(same) / static_cast<double>(ref.size());
  const bool ok = bad == 0 && frac >= 0.97;
  std::printf("CASE %-34s n=%-7zu identical=%7.3f%% within1ulp=%-5lld bad=%-5lld max_rel=%.3g inf/nan=%lld %s\n",
              name.c_str(), ref.size(), 100.0 * frac, static_cast<long long>(near), static_cast<long long>(bad),
              max_rel, static_cast<long long>(special), ok ? "PASS" : "FAIL");
  return ok;
}

// mag[i]: sum of |terms| of output i (the scale of a summation-order difference).
bool check_f32(const std::string& name, const std::vector<float>& ref, const std::vector<float>& got,
               const std::vector<double>& mag) {
  int64_t same = 0, bad = 0;
  double max_err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::memcmp(&ref[i], &got[i], 4) == 0) {
      ++same;
      continue;
    }
    const double err = std::fabs(static_cast<double>(ref[i]) - got[i]) / std::max(mag[i], 1e-30);
    max_err = std::max(max_err, err);
    if (std::getenv("HARNESS_VERBOSE")) std::printf("  [%zu] ref=%g got=%g mag=%g\n", i, ref[i], got[i], mag[i]);
    if (!(err <= 1e-5)) ++bad;
  }
  const bool ok = bad == 0;
  std::printf("CASE %-34s n=%-7zu identical=%7.3f%% bad=%-5lld max_err/sum|terms|=%.3g %s\n", name.c_str(), ref.size(),
              100.0 * static_cast<double>(same) / static_cast<double>(ref.size()), static_cast<long long>(bad), max_err,
              ok ? "PASS" : "FAIL");
  return ok;
}

bool g_huge = true;  // --no-huge-scales: unusual scales 0 and 1 only

// Scale bytes: 118..130 (2^-9 .. 2^3), except 16 unusual ones at random places: 0 (2^-127, a denormal),
// 1, 253 and 254 (2^127: a block total of 2 or more overflows to inf, in every path alike).
std::vector<uint8_t> scales(Rng& rng, size_t n) {
  static const uint8_t odd[4] = {0, 1, 253, 254};
  std::vector<uint8_t> s(n);
  for (auto& v : s) v = static_cast<uint8_t>(rng.uniform(118, 130));
  for (int i = 0; i < 16; ++i) s[rng.uniform(0, static_cast<int>(n) - 1)] = odd[i % (g_huge ? 4 : 2)];
  return s;
}

bool moe_case(Rng& rng, int64_t T, int64_t E, int64_t D, int64_t I, lk_path best) {
  const int64_t K = 4;
  std::vector<uint8_t> b1(E * 2 * I * D / 2), b2(E * D * I / 2);
  for (auto& v : b1) v = static_cast<uint8_t>(rng.uniform(0, 255));
  for (auto& v : b2) v = static_cast<uint8_t>(rng.uniform(0, 255));
  const std::vector<uint8_t> s1 = scales(rng, E * 2 * I * D / 32), s2 = scales(rng, E * D * I / 32);
  // Small activations keep a block total under 2, so that a 2^127 scale in mlp1 stays finite.
  const std::vector<uint16_t> bias1 = rng.bf16(E * 2 * I, 0.1f), bias2 = rng.bf16(E * D, 0.1f);
  const std::vector<uint16_t> h = rng.bf16(T * D, 1.0f / 64);
  std::vector<int64_t> idx(T * K);
  std::vector<float> w(T * K);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> perm(E);
    for (int64_t e = 0; e < E; ++e) perm[e] = e;
    std::shuffle(perm.begin(), perm.end(), rng.gen);
    float z = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      idx[t * K + k] = perm[k];
      w[t * K + k] = std::exp(rng.normal());
      z += w[t * K + k];
    }
    for (int64_t k = 0; k < K; ++k) w[t * K + k] /= z;
  }
  std::vector<uint16_t> h_fast = h;
  if (g_perturb) h_fast[0] = to_bf16(from_bf16(h_fast[0]) + 1.0f);
  std::vector<uint16_t> ref(T * D), got(T * D);
  const float limit = 7.0f;
  int rc1 = lk_moe_experts(h.data(), idx.data(), w.data(), b1.data(), s1.data(), bias1.data(), b2.data(), s2.data(),
                           bias2.data(), ref.data(), T, K, E, D, I, limit, LK_PATH_SCALAR, 2);
  int rc2 = lk_moe_experts(h_fast.data(), idx.data(), w.data(), b1.data(), s1.data(), bias1.data(), b2.data(),
                           s2.data(), bias2.data(), got.data(), T, K, E, D, I, limit, best, 2);
  if (rc1 != 0 || rc2 != 0) {
    std::printf("CASE moe rc scalar=%d fast=%d FAIL\n", rc1, rc2);
    return false;
  }
  return check_bf16("moe T=" + std::to_string(T) + " E=" + std::to_string(E) + " D=I=" + std::to_string(D), ref, got);
}

bool linear_case(Rng& rng, int64_t T, int64_t D, int64_t N, bool bias_on, bool out_bf16, lk_path best) {
  const std::vector<uint16_t> x = rng.bf16(T * D, 1.0f), wt = rng.bf16(N * D, 0.05f), bias = rng.bf16(N, 0.5f);
  std::vector<uint16_t> x_fast = x;
  if (g_perturb) x_fast[0] = to_bf16(from_bf16(x_fast[0]) + 8.0f);
  const uint16_t* b = bias_on ? bias.data() : nullptr;
  const std::string name = "linear T=" + std::to_string(T) + " D=" + std::to_string(D) + " N=" + std::to_string(N) +
                           (bias_on ? " bias" : " nobias") + (out_bf16 ? " bf16" : " fp32");
  if (out_bf16) {
    std::vector<uint16_t> ref(T * N), got(T * N);
    int rc1 = lk_linear_bf16(x.data(), wt.data(), b, ref.data(), T, D, N, 1, LK_PATH_SCALAR, 2);
    int rc2 = lk_linear_bf16(x_fast.data(), wt.data(), b, got.data(), T, D, N, 1, best, 2);
    if (rc1 != 0 || rc2 != 0) return false;
    return check_bf16(name, ref, got);
  }
  std::vector<float> ref(T * N), got(T * N);
  int rc1 = lk_linear_bf16(x.data(), wt.data(), b, ref.data(), T, D, N, 0, LK_PATH_SCALAR, 2);
  int rc2 = lk_linear_bf16(x_fast.data(), wt.data(), b, got.data(), T, D, N, 0, best, 2);
  if (rc1 != 0 || rc2 != 0) return false;
  std::vector<double> mag(T * N);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double m = b ? std::fabs(from_bf16(b[n])) : 0.0;
      for (int64_t i = 0; i < D; ++i) m += std::fabs(from_bf16(x[t * D + i]) * from_bf16(wt[n * D + i]));
      mag[t * N + n] = m;
    }
  return check_f32(name, ref, got, mag);
}

// Plain fp32 loops with the kernel's math: q [Hkv, G, d], k/v [S, Hkv, d], sinks [Hkv*G].
void attn_reference(const uint16_t* q, const uint16_t* k, const uint16_t* v, const float* sinks, uint16_t* out,
                    int64_t S, int64_t Hkv, int64_t G, int64_t d, float scale) {
  std::vector<float> p(S);
  for (int64_t h = 0; h < Hkv; ++h)
    for (int64_t g = 0; g < G; ++g) {
      const uint16_t* qr = q + (h * G + g) * d;
      float m = sinks[h * G + g];
      for (int64_t s = 0; s < S; ++s) {
        float a = 0.0f;
        for (int64_t i = 0; i < d; ++i) a += from_bf16(qr[i]) * from_bf16(k[(s * Hkv + h) * d + i]);
        p[s] = a * scale;
        m = std::max(m, p[s]);
      }
      float sum = 0.0f;
      for (int64_t s = 0; s < S; ++s) sum += (p[s] = std::exp(p[s] - m));
      const float inv = 1.0f / (sum + std::exp(sinks[h * G + g] - m));
      for (int64_t i = 0; i < d; ++i) {
        float o = 0.0f;
        for (int64_t s = 0; s < S; ++s) o += (p[s] * inv) * from_bf16(v[(s * Hkv + h) * d + i]);
        out[(h * G + g) * d + i] = to_bf16(o);
      }
    }
}

bool attn_case(Rng& rng, int64_t S, lk_path path) {
  const int64_t Hkv = 8, G = 8, d = 64;
  const std::vector<uint16_t> q = rng.bf16(Hkv * G * d, 1.0f), k = rng.bf16(S * Hkv * d, 1.0f),
                              v = rng.bf16(S * Hkv * d, 1.0f);
  std::vector<float> sinks(Hkv * G);
  for (auto& s : sinks) s = rng.normal(2.0f);
  std::vector<uint16_t> q_fast = q;
  if (g_perturb) q_fast[0] = to_bf16(from_bf16(q_fast[0]) + 8.0f);
  std::vector<uint16_t> ref(Hkv * G * d), got(Hkv * G * d);
  const float scale = 0.125f;
  attn_reference(q.data(), k.data(), v.data(), sinks.data(), ref.data(), S, Hkv, G, d, scale);
  const int rc = lk_attn_decode(q_fast.data(), k.data(), v.data(), sinks.data(), got.data(), S, Hkv, G, d, scale, path, 2);
  if (rc != LK_OK) {
    std::printf("CASE attn S=%lld rc=%d (no fast attention path) SKIP\n", static_cast<long long>(S), rc);
    return rc == LK_UNSUPPORTED;  // only on a CPU without AVX-512 BF16 / AVX2 / NEON
  }
  return check_bf16("attn_decode S=" + std::to_string(S) + " Hkv=8 G=8 d=64", ref, got);
}

// lk_mxfp4_rows (the expert block's inner product on its own) against the scalar path: row counts that are
// not a multiple of any row tile and token counts on both sides of every token tile (1, 2, 3: few-token
// tiles; 6, 9: the prefill tiles), which lk_moe_experts never produces; odd block counts (a lone last pair).
bool rows_case(Rng& rng, int64_t N, int64_t T, int64_t G, lk_path best) {
  const int64_t D = G * 32;
  std::vector<uint8_t> b(N * G * 16);
  for (auto& v : b) v = static_cast<uint8_t>(rng.uniform(0, 255));
  const std::vector<uint8_t> sc = scales(rng, N * G);
  const std::vector<uint16_t> x = rng.bf16(T * D, 1.0f / 64);
  std::vector<uint16_t> x_fast = x;
  if (g_perturb) x_fast[0] = to_bf16(from_bf16(x_fast[0]) + 1.0f);
  std::vector<float> ref(T * N, -1.0f), got(T * N, -1.0f);
  const int rc1 = lk_mxfp4_rows(b.data(), sc.data(), x.data(), ref.data(), T, D, N, LK_PATH_SCALAR, 2);
  const int rc2 = lk_mxfp4_rows(b.data(), sc.data(), x_fast.data(), got.data(), T, D, N, best, 2);
  if (rc1 != LK_OK || rc2 != LK_OK) {
    std::printf("CASE rows rc scalar=%d fast=%d FAIL\n", rc1, rc2);
    return false;
  }
  std::vector<double> mag(T * N, 0.0);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t t = 0; t < T; ++t) {
      double m = 0.0;
      for (int64_t i = 0; i < D; ++i) {
        const uint8_t byte = b[r * G * 16 + i / 2];
        m += std::fabs(static_cast<double>(kE2M1[i % 2 ? byte >> 4 : byte & 15]) * scale_of(sc[r * G + i / 32]) *
                       from_bf16(x[t * D + i]));
      }
      mag[t * N + r] = m;
    }
  return check_f32("mxfp4_rows N=" + std::to_string(N) + " T=" + std::to_string(T) + " G=" + std::to_string(G), ref,
                   got, mag);
}

}  // namespace

int main(int argc, char** argv) {
  std::string size = "small";
  uint64_t seed = 1234;
  int path = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--perturb") g_perturb = true;
    else if (a == "--no-huge-scales") g_huge = false;
    else if (a == "--size" && i + 1 < argc) size = argv[++i];
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--path" && i + 1 < argc) path = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--size small|full] [--perturb] [--no-huge-scales] [--seed N] [--path P]\n",
                   argv[0]);
      return 2;
    }
  }
  // --path P: compare that path (2 = AVX-512, 3 = AVX2, 4 = NEON) instead of the best one; exit 3 if the CPU
  // cannot run it.
  if (path >= 0 && !lk_path_available(static_cast<lk_path>(path))) {
    std::printf("best_path=%d path=%d unavailable\nRESULT SKIP\n", lk_best_path(), path);
    return 3;
  }
  const lk_path best = path >= 0 ? static_cast<lk_path>(path) : lk_best_path();
  std::printf("best_path=%d abi=%d size=%s perturb=%d\n", best, lk_abi_version(), size.c_str(), g_perturb ? 1 : 0);
  Rng rng(seed);
  bool ok = true;
  const bool full = size == "full";
  // MoE: D = I = 64 at every T; D = I = 2880 at T = 1 (small) or 1, 5, 40 (full).
  for (int64_t T : {1, 5, 40}) ok &= moe_case(rng, T, 8, 64, 64, best);
  for (int64_t T : {1, 5, 40})
    if (full || T == 1) ok &= moe_case(rng, T, full ? 8 : 4, 2880, 2880, best);
  // Dense bf16: T = 1 and 7, fp32 and bf16 outputs, with and without bias; a D with a tail (not % 8).
  for (int64_t T : {1, 7})
    for (bool out_bf16 : {false, true})
      for (bool bias_on : {false, true}) ok &= linear_case(rng, T, full ? 2880 : 720, 130, bias_on, out_bf16, best);
  ok &= linear_case(rng, 3, 70, 9, true, false, best);
  for (int64_t nt : {1, 2, 3, 6, 9}) ok &= rows_case(rng, 7, nt, 5, best);
  // Decode attention with sinks.
  for (int64_t S : {1, 17, 300}) ok &= attn_case(rng, S, best);
  // The peak-rate probe runs on this path (its figure means nothing under emulation; only that it works).
  double flops = 0.0;
  const int rc = lk_fma_peak(best, 2, 20000, &flops);
  const bool probe_ok = rc == LK_OK && flops > 0.0;
  std::printf("CASE fma_peak rc=%d GFLOP/s=%.1f %s\n", rc, flops / 1e9, probe_ok ? "PASS" : "FAIL");
  ok &= probe_ok;
  std::printf("RESULT %s best_path=%d\n", ok ? "PASS" : "FAIL", best);
  return ok ? 0 : 1;
}
