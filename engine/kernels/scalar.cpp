// Lantern CPU kernels: the portable scalar path (any CPU; the reference the SIMD paths are checked against).
// Natural element order, one fp32 sum per block before its scale.
#include "common.h"

namespace lk {
namespace {

void rows_scalar(const uint8_t* blocks, const uint8_t* scales, int64_t G, int64_t row_stride_b, int64_t row_stride_s,
                 int64_t nrows, const uint16_t* const* xs, int nt, float* out, int64_t out_stride) {
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
          const uint8_t v = b[g * 16 + j];
          part += kFp4[v & 0x0f] * xg[2 * j];
          part += kFp4[v >> 4] * xg[2 * j + 1];
        }
        acc += part * e8m0(s[g]);
      }
      out[r * out_stride + t] = acc;
    }
  }
}

int64_t pos_identity(int64_t i) { return i; }
int64_t len_blocks(int64_t G) { return G * kBlock; }
bool always() { return true; }

const void* dense_prepare_scalar(const uint16_t* x, int64_t, int64_t, std::vector<float>&) { return x; }

void dense_rows_scalar(const uint16_t* w, int64_t nrows, const void* xp, int64_t T, int64_t D, float* out,
                       int64_t os) {
  const uint16_t* x = static_cast<const uint16_t*>(xp);
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t t = 0; t < T; ++t) {
      float acc = 0.0f;
      for (int64_t i = 0; i < D; ++i) acc += bf16_to_f32(w[r * D + i]) * bf16_to_f32(x[t * D + i]);
      out[r * os + t] = acc;
    }
}

double fma_probe_scalar(int64_t iterations) {  // 8 chains of multiply + add (contraction is off)
  float a[8];
  for (int j = 0; j < 8; ++j) a[j] = 1.0f + 0.001f * static_cast<float>(j);
  for (int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < 8; ++j) a[j] = a[j] * 0.999999f + 1e-7f;
  float s = 0.0f;
  for (float v : a) s += v;
  probe_sink(s);
  return 2.0 * 8.0 * static_cast<double>(iterations);
}

const Isa kScalar = {LK_PATH_SCALAR, always, pos_identity, len_blocks, rows_scalar, dense_prepare_scalar,
                     dense_rows_scalar, nullptr, fma_probe_scalar};

}  // namespace

const Isa* isa_scalar() { return &kScalar; }

}  // namespace lk
