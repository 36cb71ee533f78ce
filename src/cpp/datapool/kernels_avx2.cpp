// AVX2 + FMA kernels. This file alone is compiled with -mavx2 -mfma; it is only called after a
// run-time check that the CPU has both.
#include <immintrin.h>

#include "datapool/kernels.hpp"

#define DATAPOOL_ISA_NS avx2
#define DATAPOOL_ISA_NAME "avx2"

namespace datapool {
namespace avx2 {
static inline float hsum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

static inline float sqdist(const float* a, const float* b, std::size_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  std::size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m256 e0 = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
    const __m256 e1 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8));
    acc0 = _mm256_fmadd_ps(e0, e0, acc0);
    acc1 = _mm256_fmadd_ps(e1, e1, acc1);
  }
  for (; j + 8 <= d; j += 8) {
    const __m256 e = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
    acc0 = _mm256_fmadd_ps(e, e, acc0);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; j < d; ++j) {
    const float e = a[j] - b[j];
    s += e * e;
  }
  return s;
}
#include "datapool/screen_dot_avx2.hpp"
#include "datapool/screen_keep8_avx.hpp"
}  // namespace avx2
}  // namespace datapool

#include "datapool/kernels_impl.hpp"

namespace datapool {
const Kernels& avx2_kernels() { return avx2::kKernels; }
}  // namespace datapool
