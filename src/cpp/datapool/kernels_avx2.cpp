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
// Exact int8 x int16 dot product (|a| <= 127, |b| <= 127: no overflow for d <= kScreenMaxDim):
// widen 16 bytes to int16, multiply-add pairs into int32.
constexpr std::int32_t kDotBias = 0;  // dot_i8 gives q . c itself

static inline std::int32_t dot_i8(const std::int8_t* a, const ScreenQuery& query, std::size_t d) {
  const std::int16_t* b = query.q;
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  std::size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)));
    const __m256i a1 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j + 16)));
    acc0 = _mm256_add_epi32(
        acc0, _mm256_madd_epi16(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j))));
    acc1 = _mm256_add_epi32(
        acc1,
        _mm256_madd_epi16(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j + 16))));
  }
  for (; j + 16 <= d; j += 16) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)));
    acc0 = _mm256_add_epi32(
        acc0, _mm256_madd_epi16(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j))));
  }
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  std::int32_t out = _mm_cvtsi128_si32(s);
  for (; j < d; ++j) out += static_cast<std::int32_t>(a[j]) * b[j];
  return out;
}
// The same for 8 rows at once: 8 accumulators, reduced together by a transposing horizontal add.
static inline void dot_i8_x8(const std::int8_t* const* rows, const ScreenQuery& query,
                             std::size_t d, std::int32_t* out) {
  const std::int16_t* b = query.q;
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  std::size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m256i bq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j));
    for (int r = 0; r < 8; ++r) {
      const __m256i a =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + j)));
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(a, bq));
    }
  }
  const __m256i s01 = _mm256_hadd_epi32(acc[0], acc[1]), s23 = _mm256_hadd_epi32(acc[2], acc[3]);
  const __m256i s45 = _mm256_hadd_epi32(acc[4], acc[5]), s67 = _mm256_hadd_epi32(acc[6], acc[7]);
  const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);
  const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                       _mm256_permute2x128_si256(t0, t1, 0x31));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sum);
  for (; j < d; ++j)
    for (int r = 0; r < 8; ++r) out[r] += static_cast<std::int32_t>(rows[r][j]) * b[j];
}
// The skip test of datapool/screen.hpp (screened_out_dot in kernels_impl.hpp) for rows
// i0..i0+7 at once; returns a bit per row that it cannot rule out. The 8 metas (16 bytes each)
// are transposed into one vector per field. The same operations as the scalar test, so the same
// bound (FMA contraction, where the compiler makes it, only makes it tighter).
#define DATAPOOL_HAS_KEEP8 1
static inline unsigned screen_keep8(const ScreenRows& rows, const ScreenQuery& query,
                                    std::size_t i0, const std::int32_t* raw) {
  const float* m = reinterpret_cast<const float*>(rows.meta + i0);
  auto pair = [&](int a) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(m + 4 * a)),
                                _mm_loadu_ps(m + 4 * (a + 4)), 1);
  };
  const __m256 r0 = pair(0), r1 = pair(1), r2 = pair(2), r3 = pair(3);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 scale = _mm256_shuffle_ps(t0, t2, 0x44), norm2 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 thr = _mm256_shuffle_ps(t1, t3, 0x44);
  const __m256i qsum = _mm256_castps_si256(_mm256_shuffle_ps(t1, t3, 0xEE));
  __m256i dot = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(raw));
  if (kDotBias == 128) dot = _mm256_sub_epi32(dot, _mm256_slli_epi32(qsum, 7));
  const __m256 base = _mm256_add_ps(norm2, _mm256_set1_ps(query.norm2));
  const __m256 p =
      _mm256_mul_ps(_mm256_mul_ps(scale, _mm256_set1_ps(query.scale)), _mm256_cvtepi32_ps(dot));
  const __m256 lhs = _mm256_sub_ps(base, _mm256_add_ps(p, p));
  const __m256 r = _mm256_add_ps(thr, _mm256_set1_ps(query.err));
  const __m256 rhs = _mm256_mul_ps(r, r);
  const __m256 bound = _mm256_add_ps(
      rhs, _mm256_mul_ps(_mm256_set1_ps(kScreenMargin), _mm256_add_ps(base, rhs)));
  return ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(lhs, bound, _CMP_GE_OQ))) & 0xFFu;
}
}  // namespace avx2
}  // namespace datapool

#include "datapool/kernels_impl.hpp"

namespace datapool {
const Kernels& avx2_kernels() { return avx2::kKernels; }
}  // namespace datapool
